"""Write the support-ticket routing example's data: train.csv and eval.csv (deterministic).

Each ticket asks for one thing; its category is what the customer wants done, not every
topic it mentions (a double charge the customer wants back is a refund; a late parcel they
want to cancel is a cancellation). Messages come in several styles (email with greeting
and signature, chat, terse SMS, forwarded mail) with distractors (order numbers, amounts,
dates, product names). The eval split uses request phrasings and wrappers held out from
the train split.

Example:
    python examples/tickets/generate.py          # rewrites examples/tickets/*.csv
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

# category -> (train phrasings, eval phrasings); {item}, {order}, {amount} are filled in
REQUESTS = {
    "billing": (["I was charged {amount} but my plan costs less, why is that on my invoice?",
                 "Can you send me a VAT invoice for order {order}?",
                 "How do I change the card you bill every month?",
                 "My invoice for {item} shows the wrong company name."],
                ["Which payment methods can I use for my next bill?",
                 "The statement lists a fee of {amount} I do not understand."]),
    "refund": (["I was charged twice for order {order}, please give me my {amount} back.",
                "The {item} arrived broken and I want my money back, not a replacement.",
                "You promised a refund of {amount} two weeks ago and I still have nothing.",
                "Please refund the shipping fee, the parcel came a week late."],
               ["I'd like the {amount} returned to my card, the discount code was not applied.",
                "Return received on your side already, so where is my money for the {item}?"]),
    "delivery": (["Where is order {order}? Tracking has said 'in transit' for six days.",
                  "The courier left my {item} at the wrong address.",
                  "Can the delivery of order {order} come on Saturday instead?",
                  "My parcel shows delivered but nothing is at my door."],
                 ["Tracking for {order} has not moved since Monday, is it lost?",
                  "Could you ship the {item} to my office instead of home?"]),
    "returns": (["How do I send back the {item}? It is the wrong size.",
                 "I want to exchange the {item} for the blue one.",
                 "Please email me a return label for order {order}.",
                 "Is it too late to return the {item} I bought last month?"],
                ["The {item} doesn't fit, what is the process to swap it for a larger one?",
                 "Where do I drop off a return for order {order}?"]),
    "technical": (["The app crashes every time I open my basket.",
                   "Checkout fails with 'error 502' when I pay for the {item}.",
                   "The website will not load product pictures on my phone.",
                   "The {item} firmware update froze at 80% and now it won't start."],
                  ["Your site logs me out whenever I add the {item} to the cart.",
                   "The page just spins after I press 'place order'."]),
    "account": (["I forgot my password and the reset email never arrives.",
                 "Please change the email address on my account.",
                 "How can I delete my account and all my data?",
                 "Someone else's name shows on my profile, can you fix it?"],
                ["I can't log in since I changed my phone number, help me get back in.",
                 "Please merge my two accounts into one."]),
    "cancellation": (["Cancel order {order} please, I ordered the {item} by mistake.",
                      "I want to end my subscription before the next charge.",
                      "The {item} is late, so just cancel the whole order.",
                      "Please stop my membership renewal."],
                     ["Don't ship order {order}, I no longer need it.",
                      "How do I cancel the monthly plan? I'm moving abroad."]),
    "product": (["Is the {item} compatible with a 220 V socket?",
                 "Will the {item} be back in stock before Christmas?",
                 "What is the difference between the two {item} models?",
                 "Does the {item} come with a warranty?"],
                ["Is the {item} dishwasher safe?",
                 "Which size of {item} would suit a small kitchen?"]),
}
ITEMS = ["desk lamp", "coffee grinder", "rain jacket", "office chair", "blender", "headphones",
         "yoga mat", "kettle", "backpack", "monitor stand", "air fryer", "running shoes"]
NAMES = ["Ana Souza", "Bo Chen", "Priya Nair", "Tomás Ruiz", "Emeka Obi", "Ingrid Berg",
         "Yuki Sato", "Fatima Zahra", "Liam O'Connor", "Mei Lin", "Jonas Weber", "Sara Haddad"]
# (train wrappers, eval wrappers): how a request reaches support
WRAPPERS = (
    ["Hello,\n\n{text}\n\nThanks,\n{name}", "{text}", "hi - {text} thx",
     "Dear support team,\nI hope you can help. {text}\nKind regards,\n{name} (customer since 2019)",
     "URGENT!!! {text}"],
    ["---------- Forwarded message ----------\nFrom: {name}\n\n{text}",
     "[chat transcript]\ncustomer: hi\nagent: how can I help?\ncustomer: {text}",
     "Good morning. Order history attached. {text} Best, {name}"],
)
SUBJECTS = (["Question", "Order {order}", "Help needed", "(no subject)", "Re: your email"],
            ["Support request", "Fwd: order {order}", "Quick question"])


def _ticket(split: int, index: int, rng: random.Random) -> dict[str, str]:
    category = sorted(REQUESTS)[index % len(REQUESTS)]
    values = {"item": rng.choice(ITEMS), "order": f"#{rng.randint(100000, 999999)}",
              "amount": f"€{rng.randint(5, 400)}.{rng.randint(0, 99):02d}", "name": rng.choice(NAMES)}
    text = rng.choice(REQUESTS[category][split]).format(**values)
    body = rng.choice(WRAPPERS[split]).format(text=text, name=values["name"])
    subject = rng.choice(SUBJECTS[split]).format(**values)
    return {"ticket_id": f"{'te'[split]}{index:04d}", "subject": subject, "body": body,
            "category": category}


def main() -> None:
    here = Path(__file__).parent
    for split, name, count in ((0, "train", 240), (1, "eval", 64)):
        rng = random.Random(2026 + split)
        rows = [_ticket(split, i, rng) for i in range(count)]
        with (here / f"{name}.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
