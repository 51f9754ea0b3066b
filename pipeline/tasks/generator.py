"""Deterministic order-message generator for the default extraction task.

Value pools and phrasings are data tables. Each pool is split into a train part and a
held-out part; the eval split draws mostly from the held-out parts and uses only
held-out message templates, so a student that memorized train phrasings scores lower.
A share of the train rows (MADE_UP_SHARE) gets made-up names, places and products built from
syllables, so the student learns to copy values rather than recall the pools.

Example:
    >>> from pipeline.tasks.generator import generate
    >>> rows = generate("eval", 3, seed=1)
    >>> sorted(rows[0]) == ["id", "prompt", "reference"]
    True
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

FIRST = ["John", "Priya", "Chen", "Fatima", "Lucas", "Aiko", "Olumide", "Sofia", "Mateo", "Ingrid",
         "Rahul", "Emma", "Yusuf", "Mei", "Carlos", "Hannah", "Kwame", "Elena", "Dmitri", "Amara",
         "Noah", "Leila", "Tariq", "Grace", "Sven", "Ana", "Kenji", "Zanele", "Pierre", "Nadia",
         "Omar", "Julia", "Thabo", "Lin", "Marco", "Ayesha", "Felix", "Rosa", "Arjun", "Chloe"]
LAST = ["Smith", "Patel", "Wei", "Haddad", "Moreau", "Tanaka", "Adeyemi", "Rossi", "Garcia",
        "Larsen", "Sharma", "Brown", "Demir", "Zhang", "Mendes", "Fischer", "Mensah", "Popescu",
        "Ivanov", "Okafor", "Kim", "Nasser", "Khan", "O'Brien", "Lindqvist", "Silva", "Sato",
        "Dlamini", "Dubois", "Rahman", "Farouk", "Novak", "Nkosi", "Huang", "Bianchi", "Malik",
        "Weber", "Castillo", "Iyer", "Martin"]
CITIES = ["Denver", "Leeds", "Osaka", "Lagos", "Lyon", "Pune", "Toronto", "Krakow", "Austin",
          "Bergen", "Cape Town", "Seville", "Melbourne", "Nairobi", "Valencia", "Hamburg",
          "Montreal", "Busan", "Lisbon", "Cork", "Quito", "Tallinn", "Hanoi", "Perth", "Accra",
          "Glasgow", "Curitiba", "Izmir", "Graz", "Kyoto", "Dublin", "Rotterdam", "Boise",
          "Adelaide", "Bilbao", "Cebu", "Oaxaca", "Tampere", "Windhoek", "Chennai"]
# (singular, plural): plural is what a message says for quantity > 1.
ITEMS = [("bike helmet", "bike helmets"), ("office chair", "office chairs"),
         ("laptop stand", "laptop stands"), ("printer cartridge", "printer cartridges"),
         ("box of A4 paper", "boxes of A4 paper"), ("phone charger", "phone chargers"),
         ("27-inch monitor", "27-inch monitors"), ("bag of cement", "bags of cement"),
         ("USB-C cable", "USB-C cables"), ("desk lamp", "desk lamps"),
         ("whiteboard marker", "whiteboard markers"), ("coffee grinder", "coffee grinders"),
         ("safety vest", "safety vests"), ("pallet of bricks", "pallets of bricks"),
         ("wireless mouse", "wireless mice"), ("ergonomic keyboard", "ergonomic keyboards"),
         ("first-aid kit", "first-aid kits"), ("water filter", "water filters"),
         ("folding table", "folding tables"), ("LED panel", "LED panels"),
         ("yoga mat", "yoga mats"), ("toner cartridge", "toner cartridges"),
         ("hard hat", "hard hats"), ("extension cord", "extension cords"),
         ("drill bit set", "drill bit sets"), ("notebook", "notebooks"),
         ("2TB external drive", "2TB external drives"), ("HDMI adapter", "HDMI adapters"),
         ("storage bin", "storage bins"), ("paint roller", "paint rollers"),
         ("thermal label roll", "thermal label rolls"), ("webcam", "webcams")]
NUMBER_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                "eighteen", "nineteen", "twenty"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# Date styles as data: each renders an unambiguous date that includes the year.
DATE_STYLES = [
    lambda d: d.isoformat(),
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{MONTHS[d.month - 1][:3]} {_ordinal(d.day)} {d.year}",
    lambda d: f"the {_ordinal(d.day)} of {MONTHS[d.month - 1]}, {d.year}",
    lambda d: f"{d.strftime('%A')}, {MONTHS[d.month - 1]} {d.day} {d.year}",
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
    lambda d: f"{d.day}.{d.month:02d}.{d.year} (day.month.year)",
]

# Message templates. Fields: {name} {qty} {qty_digits} {item} {city} {date} {ref} {phone}.
TRAIN_TEMPLATES = [
    "Hi, this is {name}. Please send {qty} {item} to {city} by {date}. Thanks!",
    "Subject: New order\n\nHello team,\nI'd like to order {qty} {item}. Delivery to our {city} "
    "site on {date}, please.\n\nBest regards,\n{name}",
    "{name} here - need {qty} {item} delivered in {city} on {date}",
    "Order request #{ref}\nCustomer: {name}\nProduct: {item}\nQty: {qty}\nShip to: {city}\n"
    "Deliver on: {date}",
    "Can you get {qty} {item} over to {city} for {date}? Cheers, {name}",
    "To: Purchasing\nFrom: {name}\nWe are running low. Please arrange {qty} {item} for the {city} "
    "warehouse, arriving {date}. Call {phone} if anything changes.",
    "Customer {name} from {city} wants {qty} {item}, delivery date {date}.",
    "hey!! {qty} {item} pls, ship to {city} before {date}. thx - {name}",
    "Good morning,\n\nOn behalf of the {city} branch I am ordering {qty} {item}. The delivery "
    "should arrive on {date}.\n\nKind regards\n{name}\nPhone: {phone}",
    "[chat] {name}: could we order {qty} {item}?\n[chat] {name}: for {city}, needed {date}",
]
EVAL_TEMPLATES = [
    "Dear supplier,\nKindly dispatch {qty} {item} to {city}. We need them no later than {date}.\n"
    "Sincerely, {name}",
    "Quick one from {name}: {qty} {item}, {city}, {date}. Ref {ref}.",
    "Reminder for logistics: {name} ordered {qty} {item} (ticket {ref}). Destination: {city}. "
    "Expected delivery {date}.",
    "Hello! My name is {name} and I would like {qty} {item} shipped to {city}. Could they be "
    "there on {date}? You can reach me at {phone}.",
    "RE: supplies\n> do you still need the {item}?\nYes - {qty} of them, to {city}, on {date}.\n"
    "{name}",
    "Please book a delivery: {item} x{qty_digits} -> {city} ({date}). Requested by {name}.",
]


# Train-only widening (issue 13): real traffic has names and places from everywhere, with
# diacritics and several words, items with units, many message formats, corrections and
# distractor numbers. None of these values or templates reaches the generated eval split,
# and the hand-written eval set (data/extraction-eval.jsonl, set "hand-written") was
# written separately, not from these tables.
WORLD_NAMES = ["Zoltán Kovács", "Małgorzata Nowak", "Søren Højgaard", "Çağla Öztürk",
               "Nguyễn Văn An", "Chidinma Okonkwo-Bello", "María José Fernández", "Åsa Lundgren",
               "Jürgen Weiß", "Thị Lan Phạm", "Oluwadamilare Adeyemi", "Radosław Król",
               "Inés García-Márquez", "Eoin Ó Dálaigh", "Hélène Lemaître", "Tiago Conceição",
               "Mbali Zungu", "Ravi Shankar Iyer", "Yui Nakamura-Holt", "Grzegorz Brzęczyszczykiewicz",
               "Ahmet Çelik", "Ana Lúcia Pereira", "Jóhann Sigurðsson", "Noémie Girard",
               "Bogdan Stanković", "Fatou Ndiaye", "Kaito Mori", "Ludmila Horáková",
               "Ebere Nwachukwu", "Pilar Domínguez", "Mikael Väisänen", "Hoàng Thu Trang",
               "Abdirahman Warsame", "Leticia Ramírez de la Cruz", "Taini Whitehorse",
               "Ji-hoon Choi", "Rosângela Albuquerque", "Wiremu Te Rangi", "Ilse de Jong",
               "Dragoș Ionescu"]
WORLD_CITIES = ["Kraków", "Malmö", "Düsseldorf", "Reykjavík", "São Luís", "Bogotá", "Gdańsk",
                "Thessaloníki", "Zürich", "Córdoba", "Jyväskylä", "Brașov", "Plzeň",
                "Frankfurt am Main", "Kuala Lumpur", "Ho Chi Minh City", "Rio de Janeiro",
                "Addis Ababa", "Buenos Aires", "Santa Cruz de Tenerife", "Port Louis",
                "Dar es Salaam", "Saint-Denis", "Aix-en-Provence", "Bad Homburg", "Nuuk",
                "Trois-Rivières", "Hà Nội", "Las Vegas", "Ciudad Juárez", "Ålesund", "Tórshavn",
                "Bursa", "Nizhny Novgorod", "Puerto Montt", "Bandar Seri Begawan", "Lüneburg",
                "San José", "Mérida", "Québec City"]
UNIT_ITEMS = [("10-litre water jug", "10-litre water jugs"), ("A5 notepad", "A5 notepads"),
              ("M6 anchor bolt pack", "M6 anchor bolt packs"), ("3-metre USB cable", "3-metre USB cables"),
              ("25 kg bag of flour", "25 kg bags of flour"), ("60x90 cm door mat", "60x90 cm door mats"),
              ("high-vis vest", "high-vis vests"), ("non-slip shoe cover", "non-slip shoe covers"),
              ("4-port USB hub", "4-port USB hubs"), ("half-litre thermos", "half-litre thermoses"),
              ("Wi-Fi range extender", "Wi-Fi range extenders"),
              ("pack of AA batteries", "packs of AA batteries"),
              ("crate of mineral water", "crates of mineral water"),
              ("roll of bubble wrap", "rolls of bubble wrap"),
              ("tin of wood varnish", "tins of wood varnish"),
              ("bottle of glass cleaner", "bottles of glass cleaner"),
              ("carton of copy paper", "cartons of copy paper")]
EXTRA_DATE_STYLES = [  # train only; every one unambiguous and with its year
    lambda d: f"{d.day} {MONTHS[d.month - 1].lower()} {d.year}",
    lambda d: f"{d.strftime('%a')} {d.day} {MONTHS[d.month - 1][:3]} {d.year}",
    lambda d: f"{_ordinal(d.day)} of {MONTHS[d.month - 1][:3].lower()} {d.year}",
    lambda d: f"{MONTHS[d.month - 1]} {_ordinal(d.day)}, {d.year}",
    lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}" + ("" if d.day > 12 else " (dd/mm/yyyy)"),
    lambda d: f"{d.day}.{d.month}.{d.year}" if d.day > 12 else f"{d.day}. {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{MONTHS[d.month - 1].upper()} {d.day} {d.year}",
]
# Fields beyond the basic ones: {old_qty} (a count the message corrects), {other_city} (a
# city that is not the destination), {size} (a number that is not the count), {other_name}
# (someone who is not the customer: an assistant, a colleague), {title} (Dr., Ms. ...: not
# part of the name), {code} (an order or customer code such as "KR-88412"), {other_date} (a
# date that is not the delivery date).
WIDE_TEMPLATES = [
    "Hello,\n\nCould you arrange delivery of {qty} {item} to our office in {city}? We need them on "
    "{date}.\n\nMany thanks,\n{name}\nOperations | Example Trading Ltd\nTel. {phone}\n"
    "This e-mail and any attachments are confidential.",
    "---------- Forwarded message ---------\nFrom: {name}\nSubject: order\n\nPlease deliver {qty} "
    "{item} to {city} on {date}. Thank you.\n\n---\nCan someone process this? Thanks",
    "Call note: caller {name} (account {ref}) wants {qty} {item} delivered to {city} by {date}.",
    "hi its {name}, can u send {qty} {item} to {city} for {date}? thx",
    "Order form\nFull name: {name}\nItem: {item}\nUnits: {qty}\nDelivery city: {city}\n"
    "Delivery date: {date}\nNotes: gate {size}",
    "* requester: {name}\n* item: {item}\n* qty: {qty}\n* ship to: {city}\n* when: {date}",
    "Order from {name}: {old_qty} {item} to {city} on {date}. Oh wait, make that {qty}, not {old_qty}.",
    "Hi, {name} here from the {other_city} team. Please deliver {qty} {item} to {city} (not "
    "{other_city}!) on {date}.",
    "[10:02] {name}: hello, I want to order {item}\n[10:02] Agent: How many?\n[10:03] {name}: "
    "{qty}\n[10:03] Agent: Where to?\n[10:04] {name}: {city}, by {date} please",
    "Hi, my manager {name} asked me to order {qty} {item} for {city}, by {date}. Please put the "
    "order under their name, not mine.",
    "Ticket #{ref} (priority {size})\nRequester: {name}\nBody: we need {qty} {item} in {city}, "
    "delivered {date}. We already have {old_qty} at the {other_city} site.",
    "Voicemail: \"Hi, this is {name}, we need {qty} {item} for our {city} office by {date}. "
    "Call me back on {phone}.\"",
    "pls send {qty} {item} 2 {city} by {date}. {name}",
    "Subject: Re: restock\n\nYes, please go ahead with {qty} {item} for {city}, delivered on "
    "{date}.\nBest,\n{name}\n\n> On Monday the team wrote:\n> Should these go to {other_city}?",
    # Corrections, phrased many ways: the last count or city the message settles on wins.
    "Hello, I'd like {old_qty} {item} delivered to {city} on {date}. Actually, make it {qty} "
    "{item} - the numbers changed.\n{name}",
    "Update to order {ref}: the count changes from {old_qty} to {qty} {item}. Still to {city}, "
    "still {date}.\n{name}",
    "I ordered {old_qty} {item} last week. Please change that to {qty} and deliver them to "
    "{city} by {date}. Thanks, {name}",
    "{name}: {qty} {item} for {city} on {date} (earlier I said {old_qty}, ignore that)",
    "sms: {old_qty}x {item} to {city} {date}\nsms: sorry typo, {qty} not {old_qty}\n- {name}",
    "From: {name}\nSubject: change of address\n\nPlease cancel the delivery to {other_city}. "
    "Send the {qty} {item} to {city} instead, on {date}.",
    "Change of plan: the {qty} {item} go to {city}, not {other_city}. The date stays {date}. "
    "- {name}",
    # Numbers that are not the count, next to it.
    "RE: quote {ref}\n\nThanks. Please go ahead with {qty} {item} to {city}, delivered on "
    "{date}.\n\nRegards,\n{name}\nHead of Procurement",
    "PO {ref} / {name}\n{qty} {item}, deliver to {city} (building {size}) on {date}",
    "Invoice {ref} is paid, thanks. Next order: {qty} {item} for {city}, {date}. {name}, room "
    "{size}",
    # Someone writes for the customer; titles are not part of the name.
    "Dear team, I am writing on behalf of {title} {name}, who needs {qty} {item} in {city} by "
    "{date}.\nBest wishes,\n{other_name} (assistant)",
    "{title} {name} requests {qty} {item}, to be delivered to {city} on {date}. Cost centre "
    "{ref}-{size}.",
    "From: {other_name}\nTo: Orders\n\nFor {title} {name}: {qty} {item}, deliver to {city}, "
    "{date}. Please invoice {name} directly.\n{other_name}",
    # Codes next to the name; values on lines of their own.
    "Customer: {name} ({code})\n{qty} {item} -> {city}\nwhen: {date}",
    "Order for {name}, reference {code}: {qty} {item}, ship to {city}, {date}.",
    "[WhatsApp] {name}: hi\n[WhatsApp] {name}: {qty} {item} please\n[WhatsApp] {name}: "
    "{city}\n[WhatsApp] {name}: {date} latest",
    "{name}\n{qty} {item}\n{city}\n{date}",
    "Hi, yes - {qty} {item} to {city} on {date}.\n{name}\n\n> On {other_date}, {other_name} "
    "wrote:\n> Should we ship them to {other_city}?",
]
TITLES = ["Dr.", "Dr", "Prof.", "Mr.", "Ms.", "Mrs.", "Eng."]
# Issue 31's categories of real traffic, train only: greetings and sign-offs in many
# languages (the name is the customer's, never the greeting), and a street address with a
# postcode beside the city (the city alone is the destination). Streets are made up from
# syllables, like the made-up names, so they can only be copied or left out, never recalled.
GREETINGS = ["Hola", "Bonjour", "Ciao", "Hallo", "Merhaba", "Namaste", "Salam", "Jambo", "Hej",
             "Olá", "Cześć", "Moi", "Aloha", "Shalom", "Sawasdee ka", "Kia ora", "Dzień dobry",
             "Guten Tag", "Buongiorno", "Buenos días", "Goedemorgen", "God dag", "Selamat pagi",
             "Habari", "Ahoj", "Szia", "Kumusta", "Marhaba", "Sannu", "Xin chào", "Yassou",
             "Privet", "Hei", "Grüezi", "Zdravo", "Bula", "Salut", "Hoi", "Good morning", "Hi all"]
SIGNOFFS = ["Saludos", "Cordialement", "Grazie mille", "Viele Grüße", "Teşekkürler", "Dhanyavaad",
            "Asante sana", "Obrigado", "Pozdrawiam", "Tack så mycket", "Mahalo", "Toda raba",
            "Kiitos", "Merci beaucoup", "Danke", "Groetjes", "Hälsningar", "Terima kasih",
            "Salamat po", "Spasibo", "Cheers", "Best regards", "Un abrazo", "Abraços",
            "Mit freundlichen Grüßen", "Atentamente", "Saluti", "Bien à vous", "Shukran", "Dziękuję"]
STREET_FORMS = ["{n} {w} Street", "{w}straße {n}", "Rua {w} {n}", "Calle {w} {n}", "ul. {w} {n}",
                "Via {w} {n}", "{n} rue {w}", "{w}gatan {n}", "Av. {w} {n}", "{n} {w} Road",
                "Jl. {w} No. {n}", "{w} Blvd {n}", "{w}weg {n}", "Plot {n}, {w} Avenue",
                "{n} {w} Lane, Unit {u}", "{w} Caddesi No. {n}"]
ADDRESS_SHARE = 0.3  # of wide train rows: a greeting, a sign-off or a street beside the city
ADDRESS_TEMPLATES = [
    "{greeting}! This is {name}. Please deliver {qty} {item} to {street}, {postcode} {city} on "
    "{date}. {signoff}!",
    "{greeting},\n\nplease arrange {qty} {item} for {title} {name}, to be delivered to {street}, "
    "{city} {postcode}, on {date}.\n\n{signoff},\n{other_name} (office)",
    "{greeting} team - {name} here. {qty} {item} to {street} in {city}, by {date} please. {signoff}",
    "{greeting}!\n\nCould you send {qty} {item} to {city}? Address: {street}, {postcode}. Needed "
    "on {date}.\n\n{signoff},\n{name}",
    "Delivery address: {street}, {postcode} {city}\nCustomer: {name}\nOrder: {qty} {item}\n"
    "Date: {date}\n({greeting} from {other_name} at the {other_city} office)",
    "{greeting} {other_name},\n{name} here - {qty} {item} please, to {street}, {city} "
    "({postcode}), on {date}.\n{signoff}",
    "[09:{size:02d}] {name}: {greeting}\n[09:{size:02d}] {name}: {qty} {item} to {street}, "
    "{city}\n[09:{size:02d}] {name}: on {date} pls\n[09:{size:02d}] {name}: {signoff}",
    "{greeting}, {name} writing. Ship {qty} {item} to {city} - {street}, floor {size}. Delivery "
    "{date}. {signoff}",
    "{signoff} in advance! {qty} {item} for {name}, {street}, {postcode} {city}, on {date}.\n"
    "- {other_name}, on {name}'s behalf",
]


# Made-up values (train only): a student that has seen each city a dozen times learns to
# *recall* the pool ("Glasgow" for "galway", "Seville" for "Sevilla") instead of copying the
# message. Names, places and products nobody has seen before, built from syllables, can only
# be copied — the skill the hand-written eval tests. Some rows write them in lower case, as
# people type.
SYLLABLES = ["ka", "ro", "vel", "min", "dra", "sho", "tu", "bel", "gar", "ni", "os", "quen",
             "za", "lir", "mo", "pe", "stra", "ul", "ve", "xa", "yo", "thi", "an", "dor", "ek",
             "fi", "gu", "har", "is", "jo", "bru", "cen", "dal", "et", "ho", "ir", "kos", "lu",
             "mar", "nor", "ob", "pri", "rin", "sa", "tor", "ub", "wen", "zi"]
ACCENTS = {"a": "á", "e": "é", "i": "í", "o": "ö", "u": "ü", "n": "ñ", "s": "ș", "z": "ž", "l": "ł"}
PLACE_FORMS = ["{}", "{}", "{}", "San {}", "Port {}", "{} City", "Nova {}", "{}-sur-Mer",
               "Bad {}", "{} Heights", "Al {}", "{}-{}"]
ITEM_WORDS = ["cordless", "stainless steel", "folding", "waterproof", "ergonomic", "LED",
              "wireless", "heavy-duty", "bamboo", "ceramic", "insulated", "solar", "magnetic",
              "adjustable", "portable", "recycled", "branded", "anti-static", "1.5-litre",
              "12-volt", "A3", "child-safe", "left-handed", "fireproof"]
ITEM_NOUNS = [("drill", "drills"), ("water bottle", "water bottles"), ("lantern", "lanterns"),
              ("whiteboard", "whiteboards"), ("extension cord", "extension cords"),
              ("door stop", "door stops"), ("tool box", "tool boxes"),
              ("rain jacket", "rain jackets"), ("shelving unit", "shelving units"),
              ("spray bottle", "spray bottles"), ("hand truck", "hand trucks"),
              ("label printer", "label printers"), ("storage bin", "storage bins"),
              ("floor fan", "floor fans"), ("kettle", "kettles"), ("cutting board", "cutting boards"),
              ("step ladder", "step ladders"), ("wall clock", "wall clocks"), ("pallet", "pallets"),
              ("hammock", "hammocks"), ("tripod", "tripods"), ("work glove", "work gloves")]
CONTAINERS = [("box", "boxes"), ("pack", "packs"), ("bottle", "bottles"), ("roll", "rolls"),
              ("set", "sets"), ("case", "cases"), ("bag", "bags")]
MADE_UP_SHARE = 0.4  # of train rows


def _word(rng: random.Random) -> str:
    word = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice([2, 2, 3, 3, 4])))
    if rng.random() < 0.3:
        i = rng.randrange(len(word))
        word = word[:i] + ACCENTS.get(word[i], word[i]) + word[i + 1:]
    return word.capitalize()


def _made_up(rng: random.Random) -> dict[str, Any]:
    """A made-up name, destination, other city and (sometimes) product for one train row."""
    name = " ".join(_word(rng) for _ in range(rng.choice([2, 2, 2, 3])))
    form = rng.choice(PLACE_FORMS)
    city = form.format(*(_word(rng) for _ in range(form.count("{}"))))
    other = _word(rng)
    item = None
    if rng.random() < 0.5:
        singular, plural = rng.choice(ITEM_NOUNS)
        word = rng.choice(ITEM_WORDS)
        item = (f"{word} {singular}", f"{word} {plural}")
        if rng.random() < 0.25:  # a container is part of the item: "boxes of ... lanterns"
            one, many = rng.choice(CONTAINERS)
            item = (f"{one} of {item[1]}", f"{many} of {item[1]}")
    return {"name": name, "city": city, "other_city": other, "item": item,
            "lower": rng.random() < 0.2}


def _qty_text(qty: int, rng: random.Random) -> str:
    if qty <= len(NUMBER_WORDS) and rng.random() < 0.35:
        return NUMBER_WORDS[qty - 1]
    return str(qty)


# someone beside the customer in a message (an assistant, a colleague)
OTHER_NAMES = WORLD_NAMES + [f"{first} {last}" for first, last in zip(FIRST, LAST, strict=True)]


def _extras(rng: random.Random, name: str) -> dict[str, str]:
    """The train-only fields of the wide templates: someone else, a title, a code, a date."""
    other = rng.choice([n for n in OTHER_NAMES if n != name])
    other_date = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 4 * 365))
    code = "".join(rng.choice("ABCDEFGHKLMNPRSTUVXZ") for _ in range(2)) + f"-{rng.randint(100, 99999)}"
    street = rng.choice(STREET_FORMS).format(n=rng.randint(1, 240), w=_word(rng),
                                             u=rng.randint(1, 30))
    postcode = rng.choice([f"{rng.randint(10000, 99999)}", f"{rng.randint(10, 99)}-{rng.randint(100, 999)}",
                           f"{rng.randint(1000, 9999)}", f"{_word(rng)[:2].upper()}{rng.randint(1, 20)} "
                           f"{rng.randint(1, 9)}{_word(rng)[:2].upper()}"])
    return {"other_name": other, "title": rng.choice(TITLES), "code": code,
            "other_date": rng.choice(DATE_STYLES)(other_date), "greeting": rng.choice(GREETINGS),
            "signoff": rng.choice(SIGNOFFS), "street": street, "postcode": postcode}


def _pools(split: str) -> dict[str, list[Any]]:
    """Train draws from the first 3/4 of each pool; eval mostly from the held-out rest."""
    def cut(pool: list[Any]) -> tuple[list[Any], list[Any]]:
        k = len(pool) * 3 // 4
        return pool[:k], pool[k:]

    pools = {"first": FIRST, "last": LAST, "city": CITIES, "item": ITEMS}
    if split == "train":
        return {key: cut(pool)[0] for key, pool in pools.items()}
    # Eval: held-out values, plus a few seen ones so it is not only unseen words.
    return {key: cut(pool)[1] + cut(pool)[0][:3] for key, pool in pools.items()}


def _one(split: str, index: int, rng: random.Random) -> dict[str, Any]:
    pools = _pools(split)
    wide = split == "train" and rng.random() < 0.6  # most train rows from the wide tables
    name = (rng.choice(WORLD_NAMES) if wide and rng.random() < 0.7
            else f"{rng.choice(pools['first'])} {rng.choice(pools['last'])}")
    singular, plural = rng.choice(UNIT_ITEMS if wide and rng.random() < 0.4 else pools["item"])
    qty = rng.choice([1, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 24, 30, 40, 50, rng.randint(2, 99)])
    item = singular if qty == 1 else plural
    cities = WORLD_CITIES if wide and rng.random() < 0.7 else pools["city"]
    city, other_city = rng.sample(cities, 2)
    date = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 4 * 365))
    # train only, and after the shared draws: the eval split's stream is unchanged
    made = _made_up(rng) if split == "train" and rng.random() < MADE_UP_SHARE else None
    if made:
        name, city, other_city = made["name"], made["city"], made["other_city"]
        if made["item"]:
            singular, plural = made["item"]
            item = singular if qty == 1 else plural
        if made["lower"]:
            name, city = name.lower(), city.lower()
    extra = _extras(rng, name) if split == "train" else {}  # after the shared draws, as above
    templates = ((ADDRESS_TEMPLATES if rng.random() < ADDRESS_SHARE else WIDE_TEMPLATES) if wide
                 else TRAIN_TEMPLATES if split == "train" else EVAL_TEMPLATES)
    styles = DATE_STYLES + EXTRA_DATE_STYLES if wide else DATE_STYLES
    prompt = rng.choice(templates).format(
        name=name, qty=_qty_text(qty, rng), qty_digits=qty, item=item, city=city,
        date=rng.choice(styles)(date), ref=rng.randint(1000, 99999),
        phone=f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
        old_qty=rng.choice([n for n in range(1, 60) if n != qty]), other_city=other_city,
        size=rng.randint(2, 40), **extra,
    )
    reference = {"name": name, "item": item, "quantity": qty, "city": city,
                 "date": date.isoformat()}
    return {"id": f"{split}-{index:05d}", "prompt": prompt, "reference": reference}


def generate(split: str, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` rows `{id, prompt, reference}` for split 'train' or 'eval'."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
    # Separate streams per split: changing one split's size never changes the other.
    rng = random.Random(f"{split}:{seed}")
    return [_one(split, i, rng) for i in range(count)]


SHIPPED = {"train": 400, "eval": 30}  # rows of the shipped splits (seed 2026)
HAND_WRITTEN = "hand-written"  # the eval set written by hand: verdict and gate use it


def write_shipped(data_dir: Path, seed: int = 2026) -> None:
    """Rewrite the shipped train split and the generated part of the eval file; the eval
    file's hand-written rows (set "hand-written", never generated) are kept as they are."""
    train, eval_file = data_dir / "extraction-train.jsonl", data_dir / "extraction-eval.jsonl"
    hand = [r for r in map(json.loads, eval_file.read_text(encoding="utf-8").splitlines())
            if r.get("set") == HAND_WRITTEN]
    generated = [{**r, "set": "generated"} for r in generate("eval", SHIPPED["eval"], seed)]
    for path, rows in ((train, generate("train", SHIPPED["train"], seed)), (eval_file, hand + generated)):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":  # python -m pipeline.tasks.generator: rewrite the shipped data
    write_shipped(Path(__file__).parent / "data")
