"""Human in the loop: a labelling panel over an :class:`~mednb.active.learner.ActiveLearner`."""
from __future__ import annotations

import numpy as np

from .learner import ActiveLearner


class LabelingPanel:
    """Human in the loop. ``propose()`` asks the strategy for the next ``k`` samples (shown with the
    model's probabilities), ``label(i, y)`` sets the label of proposed item ``i`` (0..k-1),
    ``use_ground_truth()`` fills every unlabelled item from the reference, ``retrain()`` adds the
    batch to the labelled set, retrains and updates the curve. ``widget`` wires ipywidgets buttons
    to these methods; displaying it never blocks (safe under papermill/nbval).
    """

    def __init__(self, learner: ActiveLearner, k: int = 8):
        self.learner, self.k = learner, int(k)
        self.batch: np.ndarray = np.zeros(0, np.int64)
        self.batch_probs: np.ndarray = np.zeros((0, learner.splits.n_outputs))
        self.answers: list[int | None] = []
        self._widget = None

    def propose(self) -> np.ndarray:
        self.batch = self.learner.query(self.k)
        self.batch_probs = self.learner.probs(self.batch)
        self.answers = [None] * len(self.batch)
        self._refresh()
        return self.batch

    def label(self, i: int, y: int) -> None:
        if not 0 <= int(i) < len(self.batch):
            raise IndexError(f"item {i} is not in the proposed batch of {len(self.batch)}")
        if not 0 <= int(y) < self.learner.splits.n_classes:
            raise ValueError(f"label must be in 0..{self.learner.splits.n_classes - 1}")
        self.answers[int(i)] = int(y)
        self._sync_toggle(int(i))

    def use_ground_truth(self) -> None:
        for i, idx in enumerate(self.batch):
            if self.answers[i] is None:
                self.answers[i] = int(self.learner.truth[idx])
                self._sync_toggle(i)

    @property
    def complete(self) -> bool:
        return len(self.batch) > 0 and all(a is not None for a in self.answers)

    def retrain(self) -> dict:
        if not self.complete:
            raise ValueError("label every proposed sample first (or click 'use ground truth')")
        self.learner.add(self.batch, self.answers)
        row = self.learner.fit()
        self.batch, self.answers = np.zeros(0, np.int64), []
        self._refresh()
        return row

    # -- widgets
    @property
    def widget(self):
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def curve(self) -> tuple[list[int], list[float]]:
        """(n_labels, test AUC) of every fit so far."""
        h = self.learner.history
        return [r["n_labels"] for r in h], [r["test_auc"] for r in h]

    def _build(self):
        import ipywidgets as W
        from matplotlib.figure import Figure
        self._out_curve = W.Output()
        self._status = W.HTML()
        self.buttons = {"propose": W.Button(description="Propose next batch", button_style="info"),
                        "ground_truth": W.Button(description="Use ground truth"),
                        "retrain": W.Button(description="Retrain", button_style="success")}
        for key, fn in (("propose", self.propose), ("ground_truth", self.use_ground_truth),
                        ("retrain", self.retrain)):
            self.buttons[key].on_click(lambda _, fn=fn: self._safe(fn))
        self._toggles: list = []
        self._items_box = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.curve_fig = Figure(figsize=(4, 2.6))
        self._widget = W.VBox([W.HBox(list(self.buttons.values())), self._status, self._items_box, self._out_curve])
        self._refresh()
        return self._widget

    def _safe(self, fn):
        try:
            fn()
        except ValueError as e:
            self._status.value = f"<b>{e}</b>"

    def _sync_toggle(self, i):
        if self._widget is not None and i < len(self._toggles):
            self._toggles[i].value = self.answers[i]

    def _refresh(self):
        if self._widget is None:
            return
        L = self.learner
        self._status.value = (f"{L.strategy_name}: {L.n_labels} labels, round {L.round}; "
                              f"{len(self.batch)} proposed" + (
                                  f"; last test AUC {L.history[-1]['test_auc']:.3f}" if L.history else ""))
        self._draw_items()
        self._draw_curve()

    def _draw_items(self):
        """One tile per proposed sample: the image, the model's probabilities, a label toggle."""
        import ipywidgets as W
        from ..plot import to_display
        from ..widgets import png
        sp = self.learner.splits
        items, self._toggles = [], []
        for i, idx in enumerate(self.batch):
            probs = " ".join(f"{sp.labels[c][:6]} {p:.2f}" for c, p in enumerate(self.batch_probs[i]))
            t = W.ToggleButtons(options=[(str(sp.labels[c])[:10], c) for c in range(sp.n_classes)],
                                value=self.answers[i], style={"button_width": "70px"})
            t.observe(lambda ch, i=i: self.answers.__setitem__(i, ch["new"]), names="value")
            self._toggles.append(t)
            items.append(W.VBox([W.Image(value=png(to_display(sp.train.x[int(idx)]), scale=3), format="png", width=84),
                                 W.HTML(f"<small>#{int(idx)}: {probs}</small>"), t]))
        self._items_box.children = items

    def _draw_curve(self):
        n, auc = self.curve()
        ax = self.curve_fig.axes[0] if self.curve_fig.axes else self.curve_fig.add_subplot()
        ax.clear()
        ax.plot(n, auc, marker="o")
        ax.set_xlabel("labels")
        ax.set_ylabel("test AUC")
        ax.grid(alpha=0.3)
        self.curve_fig.tight_layout()
        self._out_curve.clear_output(wait=True)
        if n:
            # a PNG, not the Figure: a bare Figure shows as text until pyplot has activated the inline backend
            import io
            from IPython.display import Image, display
            buf = io.BytesIO()
            self.curve_fig.savefig(buf, format="png")
            with self._out_curve:
                display(Image(buf.getvalue()))

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)
