"""The stage registry: every stage, written once.

Example:
    >>> from pipeline.stages import REGISTRY
    >>> list(REGISTRY)[:3]
    ['prompts', 'teacher_check', 'teacher']
"""

from __future__ import annotations

from pipeline.stage import Stage
from pipeline.stages.bench import (
    BenchLabelsStage,
    BenchStage,
    BenchStudentStage,
    BenchTeacherStage,
)
from pipeline.stages.bench_device import BenchDeviceStage
from pipeline.stages.bundle import BundleStage
from pipeline.stages.distill import DistillStage
from pipeline.stages.eval_set import EvalSetStage
from pipeline.stages.export_gguf import ExportGgufStage
from pipeline.stages.export_onnx import ExportOnnxStage
from pipeline.stages.export_openvino import ExportOpenVinoStage
from pipeline.stages.filter import FilterStage
from pipeline.stages.judge import JudgeStage
from pipeline.stages.labels import LabelsStage
from pipeline.stages.prompts import PromptsStage
from pipeline.stages.report import ReportStage
from pipeline.stages.student_base import StudentBaseStage
from pipeline.stages.teacher import TeacherStage
from pipeline.stages.teacher_check import TeacherCheckStage
from pipeline.stages.teacher_logits import TeacherLogitsStage

REGISTRY: dict[str, Stage] = {
    stage.name: stage
    for stage in (PromptsStage(), TeacherCheckStage(), TeacherStage(), EvalSetStage(), FilterStage(),
                  LabelsStage(), StudentBaseStage(),
                  TeacherLogitsStage(), DistillStage(), ExportGgufStage(), ExportOnnxStage(),
                  ExportOpenVinoStage(),
                  BenchTeacherStage(), BenchStudentStage(), BenchLabelsStage(), BenchStage(),
                  BenchDeviceStage(), JudgeStage(), ReportStage(),
                  BundleStage())
}
