"""Self-training on the unlabelled cells: does it lift REFINE on the spatial benchmark, and where?

REFINE trains on the labelled reference cells only; the cells it is asked about (the reference's other cells, or
a new slice) are there, unlabelled, and may differ from the labelled ones (a new slice: another section, another
batch; ``diagnose_slice_shift.md``). Self-training (``train(self_training=f)``) lets the models learn from them:
once the split has made every choice on the true labels, the split's ensemble predicts the unlabelled cells, each
predicted class's most confident half takes its prediction as a pseudo-label, and the refit trains every kept
model on the labelled and the pseudo-labelled cells. For the tasks with a new slice (seqFISH, MERFISH) the slice is
put in the training AnnData, unlabelled, beside the reference (one graph per slice; ``with_query_slice``), as
scANVI's users do; osmFISH (one slice) pseudo-labels the reference's unlabelled cells.

Variants (``--variant``), each trained on seeds 5-9 (the labelled and test cells of ``spatial_seed_replication.md``)
and compared on those seeds with the replication's REFINE fits (reference only, no self-training) and with the
best baseline chosen on seeds 0-4:

- ``all`` (``refine_self_training``): ``self_training=0.5``, every unlabelled cell a candidate (the reference's
  too) -> ``results/diagnose_self_training.md``;
- ``joint-only`` (``refine_joint_only``): the new slice in the AnnData, no self-training (``self_training=None``):
  what putting the slice there does alone (the inputs' standardisation then sees its cells) ->
  ``results/diagnose_self_training_joint_only.md``.

The package default that came of it, ``self_training="auto"`` (the new slices' cells only), is measured by the
benchmark itself (``spatial_annotation.py``, whose REFINE trains with the new slice in the AnnData). Commands:

    python benchmarks/diagnose_self_training.py --variant all --task merfish-cellclass --n 100 300 1000 3000 \\
        --seeds 5 6 7 8 9 --out part.csv     # ... every task
    python benchmarks/diagnose_self_training.py --variant all --report part.csv ...
"""

from __future__ import annotations

import sys

from spatial_seed_replication import variant_main

FRACTION = 0.5
VARIANTS = {
    "all": ("refine_self_training", "diagnose_self_training", "REFINE with self-training on every unlabelled cell",
            f"`train(self_training={FRACTION})`: the {FRACTION:.0%} most confident unlabelled cells of each predicted "
            "class (the reference's and the new slice's) pseudo-labelled for the refit; a new slice is in the "
            "training AnnData, unlabelled.", {"self_training": FRACTION}),
    "joint-only": ("refine_joint_only", "diagnose_self_training_joint_only",
                   "REFINE with the new slice in the training AnnData, without self-training",
                   "the new slice in the training AnnData, unlabelled (one graph per slice); `self_training=None`.",
                   {"self_training": None}),
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    variant = "all"
    if "--variant" in argv:
        at = argv.index("--variant")
        variant = argv[at + 1]
        del argv[at : at + 2]
    label, stem, title, change, options = VARIANTS[variant]
    variant_main(argv, __doc__, stem, label, None, title, change, train_options=options, with_query=True)


if __name__ == "__main__":
    main()
