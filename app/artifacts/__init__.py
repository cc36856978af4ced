"""The artifact store: step outputs, model files and step logs, on this machine's disk or in
an object store shared by several machines (ARTIFACTS_URL). `store.py` holds files (model
files, the store's id, the atomic writes everything uses); `outputs.py` step outputs, one
value or several named ones, each written in its format (`formats.py`: pickle, Parquet,
.npy); `logs.py` the step logs. Imports nothing of the app."""

from app.artifacts.formats import FORMATS, OutputError  # noqa: F401
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
from app.artifacts.outputs import is_manifest, load_output, manifest, save_output, split  # noqa: F401
from app.artifacts.store import (  # noqa: F401
    ArtifactError,
    MissingArtifact,
    check_name,
    delete,
    delete_tree,
    is_local,
    local_copy,
    new_store_id,
    open_artifact,
    read_store_id,
    resolve,
    root,
    size_of,
    step_dir,
    storage,
    walk,
    where,
    write_atomically,
    write_store_id,
)
