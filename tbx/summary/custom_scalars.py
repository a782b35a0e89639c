"""Custom scalars: the dashboard layout, a serialized Layout in a rank-0 DT_STRING tensor.

TensorBoard reads one layout per run: the newest value of the tag
``custom_scalars__config__``. (When several runs hold one, the dashboard
concatenates their categories in run order, merging same-titled categories.)
So a writer must always write its whole layout; SummaryWriter keeps the layout
of all its calls merged (``merge``) and writes the result each time.

torch's layout form is a dict ``{category title: {chart title: [kind, tags]}}``
with kind ``'Multiline'`` (tags are regular expressions, one line per matching
scalar tag) or ``'Margin'`` (exactly three tags: value, lower, upper).
"""

import re

from tbx.proto import custom_scalar_pb2, tensor_pb2
from tbx.summary._metadata import TENSOR, metadata, value_record

PLUGIN_NAME = "custom_scalars"
CONFIG_TAG = "custom_scalars__config__"
METADATA = metadata(PLUGIN_NAME, b"", TENSOR)
KINDS = ("Multiline", "Margin")
_LAYOUT_NAMES = ("tbx.proto.Layout", "tensorboard.Layout")


def _check_title(title, what):
    if not isinstance(title, str):
        raise TypeError(f"{what} must be a str, got {type(title).__name__} {title!r}")
    return title


def _check_tags(tags, where):
    if isinstance(tags, (str, bytes)) or not isinstance(tags, (list, tuple)):
        raise TypeError(f"{where}: tags must be a list of str, got {type(tags).__name__} {tags!r}")
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"{where}: tags must be str, got {type(tag).__name__} {tag!r}")
    return list(tags)


def _check_regex(tag, where):
    try:
        re.compile(tag)
    except re.error as exc:
        raise ValueError(
            f"{where}: tag {tag!r} is not a valid regular expression ({exc}); "
            "multiline chart tags are regexes, escape special characters with re.escape"
        ) from None


def chart(kind, tags, title, where="chart"):
    """A validated Chart of ``kind`` 'Multiline' or 'Margin'."""
    _check_title(title, f"{where}: title")
    tags = _check_tags(tags, where)
    if kind == "Margin":
        if len(tags) != 3:
            raise ValueError(f"{where}: a margin chart needs exactly 3 tags (value, lower, upper), got {len(tags)}: {tags!r}")
        series = custom_scalar_pb2.MarginChartContent.Series(value=tags[0], lower=tags[1], upper=tags[2])
        return custom_scalar_pb2.Chart(title=title, margin=custom_scalar_pb2.MarginChartContent(series=[series]))
    if kind == "Multiline":
        if not tags:
            raise ValueError(f"{where}: a multiline chart needs at least one tag (regular expression)")
        for tag in tags:
            _check_regex(tag, where)
        return custom_scalar_pb2.Chart(title=title, multiline=custom_scalar_pb2.MultilineChartContent(tag=tags))
    raise ValueError(f"{where}: chart kind must be 'Multiline' or 'Margin', got {kind!r}")


def layout_from_dict(layout):
    """A validated Layout from torch's ``{category: {title: [kind, tags]}}`` form."""
    if not layout:
        raise ValueError("layout is empty; expected {category: {chart title: ['Multiline' or 'Margin', [tags]]}}")
    result = custom_scalar_pb2.Layout()
    for category, charts in layout.items():
        _check_title(category, "layout category title")
        if not isinstance(charts, dict):
            raise TypeError(
                f"layout[{category!r}] must be a dict {{chart title: [kind, tags]}}, got {type(charts).__name__}"
            )
        if not charts:
            raise ValueError(f"layout[{category!r}] has no charts")
        cat = result.category.add(title=category)
        for title, spec in charts.items():
            where = f"layout[{category!r}][{title!r}]"
            _check_title(title, f"{where}: chart title")
            if not isinstance(spec, (list, tuple)) or len(spec) != 2:
                raise ValueError(f"{where} must be a pair [kind, tags] with kind 'Multiline' or 'Margin', got {spec!r}")
            cat.chart.append(chart(spec[0], spec[1], title, where))
    return result


def _check_layout_proto(layout):
    for cat in layout.category:
        for ch in cat.chart:
            where = f"layout category {cat.title!r} chart {ch.title!r}"
            kind = ch.WhichOneof("content")
            if kind is None:
                raise ValueError(f"{where} has neither multiline nor margin content")
            if kind == "multiline":
                if not ch.multiline.tag:
                    raise ValueError(f"{where}: a multiline chart needs at least one tag (regular expression)")
                for tag in ch.multiline.tag:
                    _check_regex(tag, where)
            elif not ch.margin.series:
                raise ValueError(f"{where}: a margin chart needs at least one series")
    return layout


def to_layout(layout):
    """A validated tbx Layout from torch's dict form or a Layout message (tbx's or TensorBoard's)."""
    if isinstance(layout, dict):
        return layout_from_dict(layout)
    descriptor = getattr(layout, "DESCRIPTOR", None)
    if getattr(descriptor, "full_name", None) in _LAYOUT_NAMES:
        return _check_layout_proto(custom_scalar_pb2.Layout.FromString(layout.SerializeToString()))
    raise TypeError(
        "layout must be a dict {category: {chart title: ['Multiline' or 'Margin', [tags]]}} "
        f"or a Layout message, got {type(layout).__name__}"
    )


def merge(into, layout):
    """Merge ``layout`` into ``into`` in place.

    Categories are matched by title, charts by title within a category: a
    chart already there is replaced where it stands, a new one is appended.
    A category's ``closed`` flag takes the newest value.
    """
    categories = {cat.title: cat for cat in into.category}
    for new in layout.category:
        cat = categories.get(new.title)
        if cat is None:
            cat = categories[new.title] = into.category.add()
            cat.CopyFrom(new)
            continue
        cat.closed = new.closed
        charts = {ch.title: ch for ch in cat.chart}
        for ch in new.chart:
            old = charts.get(ch.title)
            if old is None:
                charts[ch.title] = cat.chart.add()
                charts[ch.title].CopyFrom(ch)
            else:
                old.CopyFrom(ch)
    return into


def layout_record(layout, step, wall_time, with_metadata):
    """Framed Event bytes holding ``layout`` under CONFIG_TAG."""
    content = layout.SerializeToString()

    def fill(value):
        tensor = value.tensor
        tensor.dtype = tensor_pb2.DT_STRING
        tensor.tensor_shape.SetInParent()
        tensor.string_val.append(content)
        if with_metadata:
            value.metadata.CopyFrom(METADATA)

    return value_record(CONFIG_TAG, step, wall_time, fill)
