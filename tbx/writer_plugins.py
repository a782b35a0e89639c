"""SummaryWriter methods: add_pr_curve, add_pr_curve_raw, add_custom_scalars*, add_mesh.

A mixin of tbx.writer.SummaryWriter; it uses the writer's helpers
(`_point`, `_first_use`, `file_writer`).

Thread-safety: every method may be called from several threads. Arguments are
validated and copied on the caller's thread, so bad input raises at the call
and later changes to the caller's arrays have no effect; PR curves and meshes
are then bucketed and encoded on the background pool.
"""

import threading
import time

from tbx import _convert
from tbx.proto import custom_scalar_pb2
from tbx.summary import custom_scalars as _custom_scalars
from tbx.summary import mesh as _mesh
from tbx.summary import pr_curve as _pr_curve

_layout_lock = threading.Lock()  # guards every writer's merged layout (rarely contended)


class PluginMethods:
    """add_pr_curve, add_pr_curve_raw, add_custom_scalars*, add_mesh."""

    # -- PR curves ------------------------------------------------------------

    def add_pr_curve(self, tag, labels, predictions, global_step=None, num_thresholds=127, weights=None, walltime=None):
        """Log a precision-recall curve of binary ``predictions`` against ``labels``.

        Args:
            tag: name of the curve.
            labels: ground truth, 0/1 or bool, any shape.
            predictions: probabilities in [0, 1], the shape of ``labels``.
            global_step: integer step.
            num_thresholds: number of thresholds, evenly spaced from 0 to 1
                (>= 2). Unlike torch, values above 127 are honoured, not cut to 127.
            weights: None, a number, or an array broadcastable to ``labels``:
                each prediction's non-negative weight in the counts.
            walltime: seconds since the epoch; default now.

        Counts are computed off the caller's thread; see tbx.summary.pr_curve
        for the exact definition of each threshold.

        Example::

            writer.add_pr_curve("val/pr", labels, torch.sigmoid(logits), step)
        """
        tag, step, walltime = self._point(tag, global_step, walltime)
        n = _pr_curve.check_num_thresholds(num_thresholds)
        labels = _convert.to_numpy(labels, "labels")
        predictions = _convert.to_numpy(predictions, "predictions")
        if weights is not None:
            weights = _convert.to_numpy(weights, "weights")
        positive, probs, weights = _pr_curve.check_inputs(labels, predictions, weights)
        nbytes = positive.nbytes + probs.nbytes + (0 if weights is None else weights.nbytes)
        first = self._first_use(tag)
        self.file_writer.submit(
            _pr_curve.curve_job, tag, positive, probs, weights, n, step, walltime, first, nbytes=nbytes
        )

    def add_pr_curve_raw(self, tag, true_positive_counts, false_positive_counts, true_negative_counts,
                         false_negative_counts, precision, recall, global_step=None, num_thresholds=127,
                         weights=None, walltime=None):
        """Log a precision-recall curve from counts already computed, one entry per threshold.

        Args:
            tag: name of the curve.
            true_positive_counts, false_positive_counts, true_negative_counts,
            false_negative_counts: 1-D, finite and non-negative, one entry per
                threshold (threshold j of n is j / (n - 1)).
            precision, recall: 1-D, in [0, 1], the same length.
            global_step: integer step.
            num_thresholds: the arrays' length. The default, 127, also accepts
                any length, as torch does (TensorBoard draws as many thresholds
                as the arrays have entries); any other value must match.
            weights: ignored, as in torch (the counts already carry any weights).
            walltime: seconds since the epoch; default now.

        Example::

            writer.add_pr_curve_raw("pr", tp, fp, tn, fn, precision, recall, step, num_thresholds=len(tp))
        """
        tag, step, walltime = self._point(tag, global_step, walltime)
        n = _pr_curve.check_num_thresholds(num_thresholds)
        arrays = (true_positive_counts, false_positive_counts, true_negative_counts, false_negative_counts,
                  precision, recall)
        rows = [_convert.to_numpy(array, name) for array, name in zip(arrays, _pr_curve.ROWS)]
        data = _pr_curve.check_raw(rows, n)
        self.file_writer.write(_pr_curve.pr_curve_record(tag, data, step, walltime, self._first_use(tag)))

    # -- custom scalars ---------------------------------------------------------

    def add_custom_scalars(self, layout):
        """Add charts to the Custom Scalars dashboard of this run.

        Args:
            layout: ``{category title: {chart title: [kind, tags]}}`` where kind
                is ``'Multiline'`` (tags are regular expressions; every scalar
                tag matching one is drawn as a line) or ``'Margin'`` (exactly
                three scalar tags: value, lower bound, upper bound). A Layout
                message (``tbx.proto.custom_scalar_pb2`` or TensorBoard's
                ``layout_pb2``) is accepted too.

        TensorBoard shows only the newest layout a run holds, so unlike torch
        (where each call replaces the previous layout) tbx merges every call
        into one layout per writer and writes all of it: categories and charts
        are matched by title, a chart of the same title is replaced, new ones
        are appended. The n-th call of a writer writes at step n - 1 (torch
        always uses 0), so the tag's steps increase as TensorBoard expects.

        Example::

            writer.add_custom_scalars({"loss": {"train vs val": ["Multiline", ["loss/train", "loss/val"]]}})
        """
        self._add_layout(_custom_scalars.to_layout(layout))

    def add_custom_scalars_multilinechart(self, tags, category="default", title="untitled"):
        """Add one multiline chart (``tags`` are regular expressions) to the Custom Scalars layout.

        Example::

            writer.add_custom_scalars_multilinechart(["loss/.*"], category="training", title="losses")
        """
        self._add_layout(_one_chart("Multiline", tags, category, title))

    def add_custom_scalars_marginchart(self, tags, category="default", title="untitled"):
        """Add one margin chart to the Custom Scalars layout; ``tags`` are [value, lower, upper].

        Example::

            writer.add_custom_scalars_marginchart(["acc", "acc_low", "acc_high"], title="accuracy band")
        """
        self._add_layout(_one_chart("Margin", tags, category, title))

    def _add_layout(self, layout):
        with _layout_lock:
            merged = self.__dict__.get("_custom_scalars_layout")
            if merged is None:
                merged = self._custom_scalars_layout = custom_scalar_pb2.Layout()
                self._custom_scalars_step = 0
            _custom_scalars.merge(merged, layout)
            first = self._first_use(_custom_scalars.CONFIG_TAG)
            step = self._custom_scalars_step
            self.file_writer.write(_custom_scalars.layout_record(merged, step, time.time(), first))
            self._custom_scalars_step = step + 1

    # -- meshes -----------------------------------------------------------------

    def add_mesh(self, tag, vertices, colors=None, faces=None, config_dict=None, global_step=None, walltime=None):
        """Log a mesh or point cloud for the Mesh dashboard.

        Args:
            tag: name of the mesh; written as tags ``<tag>_VERTEX``,
                ``<tag>_FACE`` and ``<tag>_COLOR`` (for the parts given).
            vertices: ``[B, N, 3]`` coordinates (B samples of N points), finite.
            colors: None or ``[B, N, 3]`` r, g, b in 0-255 per vertex (floats
                are rounded).
            faces: None or ``[B, F, 3]`` vertex indices (0 to N - 1) of triangles.
            config_dict: None or a JSON-serializable dict of three.js settings,
                e.g. ``{"camera": {"cls": "PerspectiveCamera", "fov": 75}}``.
            global_step: integer step.
            walltime: seconds since the epoch; default now.

        Keep the same parts (colors, faces) from step to step: TensorBoard
        takes the list of parts from the tag's first record.

        Example::

            writer.add_mesh("cloud", points[None], colors=rgb[None], global_step=step)
        """
        tag, step, walltime = self._point(tag, global_step, walltime)
        vertices = _convert.to_numpy(vertices, "vertices")
        colors = None if colors is None else _convert.to_numpy(colors, "colors")
        faces = None if faces is None else _convert.to_numpy(faces, "faces")
        config = _mesh.json_config(config_dict)
        parts = _mesh.check_mesh(vertices, colors, faces)
        first = [self._first_use(_mesh.component_tag(tag, content_type)) for content_type, _array in parts]
        nbytes = sum(array.nbytes for _content_type, array in parts)
        self.file_writer.submit(_mesh.mesh_record, tag, parts, config, step, walltime, first, nbytes=nbytes)


def _one_chart(kind, tags, category, title):
    if not isinstance(category, str):
        raise TypeError(f"category must be a str, got {type(category).__name__} {category!r}")
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__} {title!r}")
    layout = custom_scalar_pb2.Layout()
    layout.category.add(title=category).chart.append(_custom_scalars.chart(kind, tags, title, f"chart {title!r}"))
    return layout
