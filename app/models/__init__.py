"""The app's models, by topic: runs.py (pipelines' history: snapshots, runs, step runs,
metrics, parameter sets, the audit trail), mlmodels.py (model versions, deployments,
retrain verdicts, result tables, API tokens) and ops.py (schedules and their slots, paused
pipelines). Beneath every other package: nothing here
imports the rest of the app."""

from app.models.mlmodels import (  # noqa: F401
    ApiToken,
    Deployment,
    DeploymentKind,
    ModelVersion,
    Promotion,
    PromotionRule,
    RegisteredModel,
    ResultKind,
    ResultTable,
    TokenScope,
    Verdict,
)
from app.models.ops import (  # noqa: F401
    AlertChannel,
    AlertRule,
    Backfill,
    BackfillSlot,
    ChannelKind,
    Condition,
    Delivery,
    DeliveryEvent,
    Incident,
    Overlap,
    PipelineState,
    Schedule,
    ScheduledSlot,
    SlotOutcome,
)
from app.models.runs import (  # noqa: F401
    FINISHED,
    UNFINISHED,
    AuditAction,
    AuditEvent,
    Lease,
    Metric,
    ParameterSet,
    ParameterSetRevision,
    PipelineSnapshot,
    Run,
    Status,
    StepAttempt,
    StepRun,
    StoreMarker,
    Timed,
    WorkerHeartbeat,
)
