"""SummaryWriter methods: add_embedding.

A mixin of tbx.writer.SummaryWriter. The Embedding Projector reads files
next to the event files, not events: this writes them synchronously (see
tbx.summary.embedding for the layout).
"""

import os
import warnings

from tbx import _convert
from tbx.errors import WriteError, WriterClosedError
from tbx.summary import embedding as _embedding
from tbx.summary import image as _image


class ProjectorMethods:
    """add_embedding."""

    def add_embedding(self, mat, metadata=None, label_img=None, global_step=None, tag="default", metadata_header=None):
        """Save points for TensorBoard's Embedding Projector (PROJECTOR tab).

        Writes ``<log_dir>/<global_step:05>/<tag>/`` with ``tensors.tsv``,
        ``metadata.tsv`` and ``sprite.png`` (the last two when given), and adds
        or replaces the entry ``<tag>:<global_step:05>`` in
        ``<log_dir>/projector_config.pbtxt``, keeping the entries already
        there (from earlier calls, other writers, or torch).

        Unlike the other add_* methods this runs synchronously: the files are
        complete when it returns (it is usually called once or twice per run).

        Args:
            mat: ``[N, D]`` real numbers (numpy, torch or nested lists), one
                point per row; NaN and inf are refused.
            metadata: N labels (each written with ``str``). With
                ``metadata_header``, N rows with one value per column.
            label_img: ``[N, C, H, W]`` thumbnails (C = 1, 3 or 4; uint8, or
                float in [0, 1]), tiled into a square sprite image.
            global_step: integer step (default 0); part of the directory name.
            tag: name of the embedding.
            metadata_header: column names for multi-column metadata. With a
                single column no header line is written, as TensorBoard reads
                a first line without a tab as a label.

        Raises:
            ValueError, TypeError: bad arguments (nothing is written then).
            WriteError: a file could not be written.
            WriterClosedError: the writer is closed.

        Thread-safety: calls from several threads (and writers) on one log
        dir are serialized around the shared config file within this
        process. The config is replaced atomically, so a reader never sees a
        partial file, but two processes adding embeddings to one log dir at
        the same moment can drop one of the two entries.

        Example::

            writer.add_embedding(features, metadata=class_names, label_img=images, global_step=epoch)
        """
        tag = _embedding.check_tag(tag)
        step = _convert.step_value(global_step)
        array = _embedding.check_mat(mat)
        num_points = array.shape[0]
        files = {_embedding.TENSORS_NAME: _embedding.tensors_tsv(array)}
        if metadata is not None:
            files[_embedding.METADATA_NAME] = _embedding.metadata_tsv(metadata, num_points, metadata_header)
        elif metadata_header is not None:
            raise ValueError("metadata_header was given without metadata; pass the metadata rows too, or drop the header")
        sprite_dim = None
        if label_img is not None:
            canvas, sprite_dim = _embedding.sprite(label_img, num_points)
            files[_embedding.SPRITE_NAME] = _image.encode_png(canvas)
        if self.file_writer.closed:
            raise WriterClosedError(f"add_embedding on a closed SummaryWriter (log dir {self.log_dir!r})")
        info = _embedding.embedding_info(tag, step, array.shape, metadata is not None, sprite_dim)
        config_path = os.path.join(self.log_dir, _embedding.CONFIG_NAME)
        folder = os.path.join(self.log_dir, *_embedding.subdir(tag, step).split("/"))
        with _embedding.config_lock(self.log_dir):
            config = _embedding.read_config(config_path)
            try:
                os.makedirs(folder, exist_ok=True)
                for name, data in files.items():
                    _embedding.write_atomically(os.path.join(folder, name), data)
                replaced = _embedding.merge(config, info)
                _embedding.write_atomically(config_path, _embedding.config_text(config))
            except OSError as exc:
                raise WriteError(f"add_embedding could not write {exc.filename or folder!r}: {exc.strerror or exc}") from exc
        if replaced:
            warnings.warn(
                f"add_embedding replaced the embedding {info.tensor_name!r} in {config_path}; "
                "pass another global_step or tag to keep both",
                UserWarning,
                stacklevel=2,
            )
