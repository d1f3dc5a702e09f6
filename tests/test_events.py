"""Event post-processing rules (hear-eval-kit §3.4) on hand-built frames, and selection on validation."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.ndimage import median_filter

from evaluation.events import FrameLayout, events_from_frames, postprocessing_settings, select_postprocessing
from evaluation.scores import SCORES

LABELS = ["a", "b"]
TIMES = np.arange(20) * 40.0  # 40 ms hop


def frames(active_a=(), active_b=(), level=0.9):
    probabilities = np.full((len(TIMES), 2), 0.1, dtype=np.float32)
    probabilities[list(active_a), 0] = level
    probabilities[list(active_b), 1] = level
    return probabilities


def test_runs_become_events_from_first_to_last_timestamp():
    events = events_from_frames(frames(range(2, 9), range(5, 15)), TIMES, LABELS, 0, 0)
    assert events == [{"label": "a", "start": 80.0, "end": 320.0}, {"label": "b", "start": 200.0, "end": 560.0}]


def test_min_duration_keeps_equal_and_drops_shorter():
    probabilities = frames(range(2, 6), range(10, 13))  # a: 80..200 (120 ms), b: 400..480 (80 ms)
    assert [e["label"] for e in events_from_frames(probabilities, TIMES, LABELS, 0, 120)] == ["a"]
    assert events_from_frames(probabilities, TIMES, LABELS, 0, 121) == []


def test_threshold_is_strictly_greater_than_half():
    assert events_from_frames(frames(range(3, 9), level=0.5), TIMES, LABELS, 0, 0) == []
    assert len(events_from_frames(frames(range(3, 9), level=0.5001), TIMES, LABELS, 0, 0)) == 1


def test_median_filter_width_is_rounded_ms_over_mean_hop():
    probabilities = frames([5, 6, 8, 9])  # a one-frame gap
    # 250 ms / 40 ms = 6.25 -> 6 frames: the gap is filled
    filled = events_from_frames(probabilities, TIMES, LABELS, 250, 0)
    assert len(filled) == 1
    expected = median_filter(probabilities, size=(6, 1)) > 0.5
    starts = np.nonzero(np.diff(np.r_[0, expected[:, 0].astype(int)]) == 1)[0]
    assert [e["start"] for e in filled] == list(TIMES[starts])
    # 10 ms -> width 0: no filtering, the gap splits the run in two
    assert len(events_from_frames(probabilities, TIMES, LABELS, 10, 0)) == 2


def test_unsorted_timestamps_are_sorted_first():
    probabilities = frames(range(2, 9))
    order = np.random.default_rng(0).permutation(len(TIMES))
    assert events_from_frames(probabilities[order], TIMES[order], LABELS, 250, 125) == \
        events_from_frames(probabilities, TIMES, LABELS, 250, 125)


def test_single_frame_file_is_not_filtered():
    assert events_from_frames(np.array([[0.9, 0.1]]), np.array([0.0]), LABELS, 250, 0) == \
        [{"label": "a", "start": 0.0, "end": 0.0}]


def test_default_and_task_grids_in_parameter_grid_order():
    assert postprocessing_settings({}) == [(("median_filter_ms", 250), ("min_duration", 125)),
                                           (("median_filter_ms", 250), ("min_duration", 250))]
    maestro = {"evaluation_params": {"event_postprocessing_grid": {"median_filter_ms": [150], "min_duration": [50]}}}
    assert postprocessing_settings(maestro) == [(("median_filter_ms", 150), ("min_duration", 50))]


def test_layout_groups_rows_by_file_and_sorts_by_time():
    filenames = ["y.wav", "x.wav", "y.wav", "x.wav"]
    layout = FrameLayout.from_rows(filenames, np.array([40.0, 40.0, 0.0, 0.0]))
    assert layout.files == ["y.wav", "x.wav"]
    assert [list(r) for r in layout.rows] == [[2, 0], [3, 1]]


def test_selection_prefers_the_better_setting_and_breaks_ties_like_the_kit():
    # one 200 ms event: min_duration 250 drops it (F = NaN -> 0), 125 keeps it (F = 1)
    probabilities = frames(range(5, 11))
    layout = FrameLayout.from_rows(["f.wav"] * len(TIMES), TIMES)
    reference = {"f.wav": [{"label": "a", "start": 200.0, "end": 400.0}]}
    settings = postprocessing_settings({})
    best, value = select_postprocessing(layout, probabilities, reference, LABELS, settings,
                                        SCORES["event_onset_200ms_fms"])
    assert best == settings[0] and value == 1.0
    # a long event passes both settings: equal scores -> the kit's descending sort picks min_duration 250
    probabilities = frames(range(2, 18))
    reference = {"f.wav": [{"label": "a", "start": 80.0, "end": 680.0}]}
    best, value = select_postprocessing(layout, probabilities, reference, LABELS, settings,
                                        SCORES["event_onset_200ms_fms"])
    assert best == settings[1] and value == 1.0


@pytest.mark.parametrize("backend", ["fast", "sed_eval"])
def test_selection_counts_nan_as_zero_but_returns_the_score_as_computed(backend):
    """Nothing detected: every setting's F-measure is NaN; the kit sorts by 0 but logs the recomputed NaN."""
    layout = FrameLayout.from_rows(["f.wav"] * len(TIMES), TIMES)
    reference = {"f.wav": [{"label": "a", "start": 200.0, "end": 400.0}]}
    settings = postprocessing_settings({})
    best, value = select_postprocessing(layout, frames(), reference, LABELS, settings,
                                        SCORES["event_onset_200ms_fms"], backend)
    assert best == settings[1] and math.isnan(value)  # ties at 0 -> the kit's descending tuple order


def test_a_minimised_score_counts_nan_as_its_worst():
    """With an error-like (minimised) primary score, NaN must lose, not win as a 0 would."""
    probabilities = frames(range(5, 11))  # min_duration 125 keeps the 200 ms event (1.0), 250 drops it (NaN)
    layout = FrameLayout.from_rows(["f.wav"] * len(TIMES), TIMES)
    reference = {"f.wav": [{"label": "a", "start": 200.0, "end": 400.0}]}
    settings = postprocessing_settings({})
    minimised = dataclasses.replace(SCORES["event_onset_200ms_fms"], maximize=False)
    best, value = select_postprocessing(layout, probabilities, reference, LABELS, settings, minimised)
    assert best == settings[0] and value == 1.0


@pytest.mark.parametrize("backend", ["fast", "sed_eval"])
def test_selection_is_the_same_with_either_backend(backend):
    probabilities = frames(range(5, 11), range(2, 4))
    layout = FrameLayout.from_rows(["f.wav"] * len(TIMES), TIMES)
    reference = {"f.wav": [{"label": "a", "start": 200.0, "end": 400.0}, {"label": "b", "start": 80.0, "end": 120.0}]}
    best, value = select_postprocessing(layout, probabilities, reference, LABELS, postprocessing_settings({}),
                                        SCORES["event_onset_200ms_fms"], backend)
    assert best == (("median_filter_ms", 250), ("min_duration", 125))
    assert value == pytest.approx(2 / 3)
