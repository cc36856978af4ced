"""The app's models, by topic: runs.py (pipelines' history: snapshots, runs, step runs,
metrics, parameter sets, the audit trail), mlmodels.py (model versions, deployments,
retrain verdicts, result tables, API tokens), monitoring.py (what live models do: the
prediction log, health, drift, shadow and canary trials, feedback), ops.py (schedules and their slots, paused
pipelines, alerts) and people.py (each person's preferences). Beneath every other package: nothing here
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
from app.models.monitoring import (  # noqa: F401
    DriftReport,
    Feedback,
    Prediction,
    PredictionMinute,
    ReferenceProfile,
    Role,
    Trial,
    TrialMode,
    TrialOutcome,
)
from app.models.ops import (  # noqa: F401
    AlertChannel,
    AlertRule,
    Backfill,
    BackfillSlot,
    ChannelKind,
    CloseReason,
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
from app.models.people import Preferences  # noqa: F401
from app.models.runs import (  # noqa: F401
    FINISHED,
    RUN_STATUSES,
    UNFINISHED,
    AuditAction,
    AuditEvent,
    Lease,
    Metric,
    ParameterSet,
    ParameterSetRevision,
    PipelineSnapshot,
    Pool,
    Run,
    RunTag,
    Status,
    StepAttempt,
    StepRun,
    StoreMarker,
    Timed,
    WorkerHeartbeat,
)
