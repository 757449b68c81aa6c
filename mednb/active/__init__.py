"""Active learning: which samples should a doctor label? (notebook 06)

Pool-based loop. The training split is a pool; a small random *seed set* is labelled (cold start),
a model is trained, a *strategy* scores the unlabelled pool and the ``k`` most informative samples
go to the annotator (an oracle that reads the ground truth, or a person through
:class:`LabelingPanel`); the model is retrained (from scratch, or warm-started) and the loop goes
on until the budget is spent. Every round is evaluated on the test split (model selection on val,
as :func:`mednb.engine.fit` does) and logged in a tidy history.

``run(splits, "aift", schedule(20, 20, 5), engine.Recipe(steps=120, batch_size=32), model=ModelSpec("cnn"))``
runs one strategy; :func:`compare` runs several over seeds. How each round trains is an
:class:`~mednb.engine.Recipe` with a budget in optimizer steps (default :data:`RECIPE`): every round of every
strategy trains the same number of steps, whatever its number of labels. The model is a :class:`ModelSpec`; the
query-time settings of BALD and AIFT are a :class:`Scoring`. :mod:`.verdicts` pairs strategies over seeds at a
round (:func:`paired_at`, :func:`best_strategy`) and measures how the low-label numbers move when validation is
matched to the labels (:func:`val_labels_effect`).

Strategies (:data:`STRATEGIES`, :func:`names`; higher score = queried first):

* ``random`` — uniform sampling, the baseline every claim is measured against.
* ``least_confidence`` — ``1 − max_k p_k``.
* ``margin`` — ``−(p_(1) − p_(2))``, the gap between the two most probable classes.
* ``entropy`` — ``−Σ_k p_k log p_k``.
* ``bald`` — Bayesian Active Learning by Disagreement (Houlsby et al. 2011; MC dropout as in Gal,
  Islam & Ghahramani, ICML 2017): mutual information ``H(E_t p_t) − E_t H(p_t)`` over ``T``
  stochastic forward passes with dropout on (the model needs ``dropout > 0``; dropout is enabled
  at query time only).
* ``coreset`` — core-set / k-center greedy on ``model.embed`` features (Sener & Savarese, ICLR 2018):
  repeatedly take the pool sample farthest from every labelled (or already chosen) sample.
* ``aift`` — Zhou et al., "Fine-tuning convolutional neural networks for biomedical image analysis:
  actively and incrementally", CVPR 2017: each candidate is augmented into ``m`` copies, the
  ``alpha`` fraction of copies that agree most with the candidate's majority class is kept, and the
  candidate's score is ``λ1 Σ_j e_j + λ2 Σ_{j≠l} d(j, l)`` — entropy of each copy plus the symmetric
  KL diversity between copies. The paper starts from a pre-trained CNN (see :func:`pretrained`).

Files: :mod:`.scores` (pure score functions), :mod:`.probes` (probabilities, MC dropout, augmented
copies, embeddings), :mod:`.strategies` (the registry), :mod:`.sources` (pre-trained encoders),
:mod:`.learner` (one run's state and rounds), :mod:`.loop` (schedules, run, compare), :mod:`.cost`
(:func:`labels_needed`, :func:`labels_saved_vs_random`, :func:`cost_table`), :mod:`.verdicts` (paired
verdicts, the validation-size study), :mod:`.panel` (the
labelling widget), :mod:`.profiles` (notebook profiles, the AIFT paper's claim).
"""
from .cost import cost_table, labels_needed, labels_saved_vs_random, mean_curve, queried_classes
from .learner import RECIPE, ActiveLearner, ModelSpec, pool_indices
from .loop import compare, load_data, run, schedule
from .panel import LabelingPanel
from .probes import augmented_probs, dihedral, dropout_layers, embeddings, mc_dropout_probs, predict_probs
from .profiles import AIFT_PAPER, CHECKS, PROFILES
from .scores import aift_scores, bald, entropy, k_center_greedy, least_confidence, margin, top_k
from .sources import PRETRAIN_SOURCES, load_encoder, pretrained
from .strategies import STRATEGIES, Scoring, get, names, register, scores_table
from .verdicts import best_strategy, paired_at, val_labels_effect

__all__ = ["PROFILES", "CHECKS", "AIFT_PAPER", "RECIPE", "STRATEGIES", "PRETRAIN_SOURCES", "ActiveLearner", "ModelSpec",
           "Scoring", "LabelingPanel", "entropy", "least_confidence", "margin", "bald", "k_center_greedy",
           "aift_scores", "top_k", "predict_probs", "mc_dropout_probs", "embeddings", "dihedral", "augmented_probs",
           "dropout_layers", "register", "names", "get", "scores_table", "load_encoder", "pretrained", "load_data",
           "schedule", "run", "compare", "pool_indices", "mean_curve", "labels_needed", "labels_saved_vs_random",
           "cost_table", "queried_classes", "paired_at", "best_strategy", "val_labels_effect"]
