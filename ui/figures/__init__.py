"""Pure figure builders: plain numbers/arrays in, `go.Figure` out. No Streamlit, no tensors;
metric labels and units come from core.metrics.METRICS_INFO.

Pages turn tensors into numpy arrays and call these; tests call them directly. The modules group
the figures by what they draw; every public name is re-exported here (`figures.X`).
"""

from ui.figures.bars import amortized_bars, cost_bars, forget_quality_bars, restored_bars, strategy_bars
from ui.figures.common import (
    FINE_KEYS,
    METRIC_LABELS,
    PALETTE,
    PERCENT_KEYS,
    REFERENCE_LABELS,
    STRATEGY_COLORS,
    UNIT_TEXT,
    Series,
    axis_title,
    color,
    metric_label,
    percent_format,
    percent_range,
    tick_format,
    to_html,
)
from ui.figures.curvature import layer_heatmap, layer_share, log_histogram, matrix, score_histogram
from ui.figures.data import PIPELINE, class_histogram, image_grid, pipeline, sample_picker, training_curves
from ui.figures.grids import filter_layout, layer_grid, log_scores, tile
from ui.figures.results import (
    curve_columns,
    metric_bars,
    metric_vs_budget,
    relearn_curves,
    tradeoff,
    unlearning_curves,
)
from ui.figures.where import feature_projection, function_distance, layer_profile

__all__ = [
    "FINE_KEYS",
    "METRIC_LABELS",
    "PALETTE",
    "PERCENT_KEYS",
    "PIPELINE",
    "REFERENCE_LABELS",
    "STRATEGY_COLORS",
    "UNIT_TEXT",
    "Series",
    "amortized_bars",
    "axis_title",
    "class_histogram",
    "color",
    "cost_bars",
    "curve_columns",
    "feature_projection",
    "filter_layout",
    "forget_quality_bars",
    "function_distance",
    "image_grid",
    "layer_grid",
    "layer_heatmap",
    "layer_profile",
    "layer_share",
    "log_histogram",
    "log_scores",
    "matrix",
    "metric_bars",
    "metric_label",
    "metric_vs_budget",
    "percent_format",
    "percent_range",
    "pipeline",
    "relearn_curves",
    "restored_bars",
    "sample_picker",
    "score_histogram",
    "strategy_bars",
    "tick_format",
    "tile",
    "tradeoff",
    "training_curves",
    "to_html",
    "unlearning_curves",
]
