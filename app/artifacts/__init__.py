"""The artifact store: step outputs, model files and step logs, on this machine's disk or in
an object store shared by several machines (ARTIFACTS_URL). `store.py` holds outputs, model
files and the store's id; `logs.py` the step logs. Imports nothing of the app."""

from app.artifacts.logs import (  # noqa: F401
    CHUNK_BYTES,
    FLUSH_SECONDS,
    TAIL_BYTES,
    TAIL_LINES,
    log_path,
    log_size,
    log_tail,
    open_log,
    read_log,
)
from app.artifacts.store import (  # noqa: F401
    ArtifactError,
    MissingArtifact,
    check_name,
    delete,
    delete_tree,
    is_local,
    load_output,
    local_copy,
    new_store_id,
    open_artifact,
    read_store_id,
    resolve,
    root,
    save_output,
    size_of,
    step_dir,
    storage,
    walk,
    where,
    write_atomically,
    write_store_id,
)
