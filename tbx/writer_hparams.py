"""SummaryWriter methods: add_hparams.

A mixin of tbx.writer.SummaryWriter; it uses the writer's helpers
(`_point`, `_first_use`, `file_writer`).

Thread-safety: add_hparams may be called from several threads. Every argument
is validated before anything is written, so a bad call writes nothing.
"""

import os
import time

from tbx.errors import WriterClosedError
from tbx.event_file import EventFileWriter
from tbx.record import encode_scalar as _encode_scalar
from tbx.summary import hparams as _hparams

OWN_RUN = "."
"""``run_name`` that puts the hparams into the writer's own run (no sub-run)."""


class HParamsMethods:
    """add_hparams."""

    def add_hparams(self, hparam_dict, metric_dict, hparam_domain_discrete=None, run_name=None, global_step=None,
                    *, extra_metrics=None):
        """Log one session of the hparams dashboard: hyperparameter values plus metrics.

        As in torch, by default the session goes to a new sub-run
        ``<log_dir>/<run_name>`` (``run_name`` defaults to ``str(time.time())``)
        holding the experiment, session start and session end (status
        success) summaries and one scalar per metric at ``global_step``.

        ``run_name="."`` (any name that resolves to the writer's own
        directory) writes all of it into the writer's own run instead, so the
        run's other scalars sit in the same session and no extra run appears.
        TensorBoard keeps the first hparams of a run: call it once per run.
        Choose metric tags that add_scalar does not also use in that run,
        since the metric point is written at ``global_step``.

        Every session carries its own experiment summary (the dashboard's
        columns), as torch writes it; TensorBoard shows the columns of one of
        them, so give every call the same hparam names, domains and metrics.

        Args:
            hparam_dict: {name: value}; values may be bool, int, float, str,
                None or one-element numpy/torch values. None is written as the
                string "None" (torch drops the key). Booleans are typed BOOL
                (torch stores them as 0/1 numbers). Lists and nested dicts are
                refused: flatten them or pass str(value).
            metric_dict: {tag: real number}, logged as scalars; these tags are
                the dashboard's metric columns.
            hparam_domain_discrete: optional {name: [values]}, the values an
                hparam can take, of the hparam's own type; its current value
                must be one of them.
            run_name: the session's run below log_dir; see above for ".".
            global_step: step of the metric scalars; must fit in int32
                (the dashboard cannot list sessions with larger steps).
            extra_metrics: (tbx extension) more metric columns, whose values
                are scalars logged elsewhere in the session: a tag (in the
                session's run) or a ``(group, tag)`` pair, the group being a
                run below the session's run, e.g. ``("eval", "accuracy")`` for
                ``<session>/eval``. TensorBoard shows exactly the metrics
                listed here and in metric_dict (torch lists only metric_dict).

        Names and string values are limited to
        ``tbx.summary.hparams.MAX_STRING_BYTES`` (64 KiB of UTF-8).

        Raises:
            TypeError: a non-dict argument, an unsupported value type, or a
                domain value of another type than its hparam.
            ValueError: an empty or too long name or string, a value outside
                its domain, a step outside int32.

        Example::

            writer.add_hparams({"lr": 1e-3, "optimizer": "adam"}, {"hparam/accuracy": 0.91})
            writer.add_hparams(hparams, {"hparam/loss": 0.2}, run_name=".",
                               extra_metrics=["train/loss", ("eval", "accuracy")])
        """
        checked = _hparams.check(hparam_dict, metric_dict, hparam_domain_discrete, global_step, extra_metrics)
        if run_name is not None and not isinstance(run_name, (str, os.PathLike)):
            raise TypeError(f"run_name must be a str or None, got {type(run_name).__name__} {run_name!r}")
        if self.file_writer.closed:
            raise WriterClosedError(f"add_hparams on a closed SummaryWriter ({self.log_dir!r})")
        wall_time = time.time()
        data = _hparams.session_records(checked, wall_time)
        for tag, value in checked.metrics.items():
            data += _encode_scalar(tag, value, checked.step, wall_time, None, True)

        run_dir = os.path.join(self.log_dir, os.fspath(run_name) if run_name else str(wall_time))
        if os.path.abspath(run_dir) == os.path.abspath(self.log_dir):
            self.file_writer.write(data)
            return
        writer = self._sub_writers.get(run_dir)
        if writer is not None and not writer.closed:  # a run this writer already keeps open
            writer.write(data)
            return
        # As torch does: a writer for this call only, closed (so written) before returning.
        writer = EventFileWriter(run_dir, self.filename_suffix, self.flush_secs)
        try:
            writer.write(data)
        finally:
            writer.close()
