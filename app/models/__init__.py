"""The app's models, by topic: runs.py (pipelines' history) and registry.py (models)."""

from app.models.registry import (  # noqa: F401
    ApiToken, Deployment, DeploymentKind, ModelVersion, Promotion, PromotionRule, RegisteredModel, ResultKind,
    ResultTable, Verdict,
)
from app.models.runs import (  # noqa: F401
    FINISHED, UNFINISHED, AuditAction, AuditEvent, Metric, ParameterSet, ParameterSetRevision, PipelineSnapshot, Run,
    Status, StepAttempt, StepRun, Timed, WorkerHeartbeat,
)
