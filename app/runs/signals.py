"""What the engine announces to the layers above it.

The engine never imports the code that reacts to a run (retrain rules today; alerts and
schedules next): it sends a signal, and those packages connect receivers at start-up
(app.apps). Receivers run synchronously in the sender's transaction, so what they record
commits, or rolls back, with the run's own bookkeeping.
"""

from django.dispatch import Signal

# Sent inside the transaction that gives a run its final status, with `run_id` (int) and
# `status` (a finished app.models.Status value). Once per run, unless an operator marks one
# of its steps by hand after it finished (app.runs.actions.mark_step): it is sent again when
# the run finishes again, with its new status.
run_finished = Signal()
