"""The rows of `bench_ablation.py`: every generator and loss option tried, by name.

Each row is a list of `cfgen explainer fit` options applied on top of `OFFICIAL` (the official
generator with the CPU config's weights), and a sentence of what it changes. No row's training
reads the oracle, the judges, the synthetic factors or the renderer; a row that reads the
ground-truth masks says so in its name (`gt_`).
"""

# The official generator (docs/DESIGN.md, "Official defaults"): encoder-decoder to a 4x4
# bottleneck, no skips, the whole image redrawn; the CPU config's loss weights, one critic step
# per generator step, the adversarial term weighted 1 and the drawing trained by the classifier
# term, pinned so that a row means the same whatever the config's default. Every row starts
# from it.
OFFICIAL = [
    "--model.generator.output", "image", "--model.generator.skips", "false",
    "--model.generator.edit_downsample", "1", "--model.generator.mask_downsample", "1",
    "--model.generator.norm", "batch", "--model.classifier_term.drawing", "trained",
    "--model.optimisation.n_critic", "1", "--model.weights.adversarial", "1.0",
    "--model.weights.mask", "0", "--model.weights.mask_tv", "0",
    "--model.weights.mask_binary", "0", "--model.weights.redraw", "0",
    "--model.classifier_term.view_shift", "0", "--model.classifier_term.view_blur", "0",
    "--model.classifier_term.view_noise", "0",
    "--model.classifier_term.loss", "classifier_cross_entropy",
    "--model.discriminator.views", "[]",
]  # fmt: skip
BLEND = ["--model.generator.output", "blend", "--model.weights.mask", "1.0"]
DIFFERENCE = ["--model.generator.output", "difference"]
REDRAW = ["--model.weights.redraw", "1.0"]
MASK4 = ["--model.generator.mask_downsample", "4"]
BINARY = ["--model.weights.mask_binary", "1.0"]
LOW2 = ["--model.generator.edit_downsample", "2"]
AREA01 = ["--model.weights.mask", "0.1"]  # a tenth of the blend's area penalty
DVIEWS = ["--model.discriminator.views", "[translation, cutout]"]  # DiffAugment for D
# The CPU config's 16 -> 128 channels halved, in the generator and the discriminator.
NARROW = [
    "--model.generator.width", "8", "--model.generator.max_width", "64",
    "--model.discriminator.width", "8", "--model.discriminator.max_width", "64",
]  # fmt: skip
VIEWS = [
    "--model.classifier_term.view_shift", "1.0", "--model.classifier_term.view_blur", "0.7",
    "--model.classifier_term.view_noise", "0.03",
]  # fmt: skip
FIXED = ["--model.classifier_term.drawing", "fixed"]  # f moves only the mask and the flow
CRITIC2_ADV3 = ["--model.optimisation.n_critic", "2", "--model.weights.adversarial", "3.0"]
# Row name -> (options on top of OFFICIAL, what the row changes).
ROWS: dict[str, tuple[list[str], str]] = {
    "official": ([], "official encoder-decoder (4x4 bottleneck, no skips)"),
    "skips": (["--model.generator.skips", "true"], "+ U-Net skips, image output"),
    "residual": (["--model.generator.output", "residual"], "residual output x + tanh(Δ)"),
    "blend": (BLEND, "blend m·G + (1 − m)·x, mask area 1.0"),
    "blend_views": ([*BLEND, *VIEWS], "blend + classifier term on random views"),
    "blend_low2": ([*BLEND, *LOW2], "blend, edit at half resolution"),
    "blend_bin": ([*BLEND, *BINARY], "blend, opaque-or-clear mask"),
    "blend_low2_bin": (
        [*BLEND, *BINARY, *LOW2],
        "blend at half resolution, opaque-or-clear mask",
    ),
    "redraw": ([*BLEND, *REDRAW], "blend of a redraw trained as the official image; f moves m"),
    "redraw_mask4": ([*BLEND, *REDRAW, *MASK4], "redraw, blended through a 1/4-resolution mask"),
    "blend_mask4": ([*BLEND, *MASK4], "blend of the redraw through a mask at 1/4 resolution"),
    "blend_low2_area01": ([*BLEND, *LOW2, *AREA01], "blend_low2 with mask area 0.1"),
    "blend_low2_area0": (
        [*BLEND, *LOW2, "--model.weights.mask", "0"],
        "blend_low2 without a mask area penalty",
    ),
    "redraw_mask4_area01": ([*BLEND, *REDRAW, *MASK4, *AREA01], "redraw_mask4, mask area 0.1"),
    "difference": (DIFFERENCE, "x + G(x, c) - G(x, c_x): the redraw's change added to the query"),
    "official_running": (
        ["--model.averaging.bn_statistics", "running"],
        "official, rendering with the running batch-norm averages (the default before 2026-12-03)",
    ),
    "official_group": (
        ["--model.generator.norm", "group"],
        "official, conditional group norm instead of batch norm",
    ),
    "official_dviews": (DVIEWS, "official, D judges translated and cut-out views (DiffAugment)"),
    "official_batch16": (
        ["--data.batch_size", "16"],
        "official, batches of 16 instead of 32 (half the work per generator step)",
    ),
    "official_logit_l1": (
        ["--model.classifier_term.loss", "classifier_logit_l1"],
        "official, classifier term L1 on logits (MedIA follow-up) instead of cross-entropy",
    ),
    "official_cls3": (
        ["--model.weights.classifier", "3.0"],
        "official, classifier term weighted 3 instead of 1",
    ),
    "blend_low2_area01_cls3": (
        [*BLEND, *LOW2, *AREA01, "--model.weights.classifier", "3.0"],
        "blend_low2_area01, classifier term weighted 3 instead of 1",
    ),
    # A critic of this size tells the default's frames from real faces on its own (bench_critic):
    # give it two steps per generator step and its term three times the weight.
    "blend_low2_area01_d2_adv3": (
        [*BLEND, *LOW2, *AREA01, *CRITIC2_ADV3],
        "blend_low2_area01, two critic steps per generator step, adversarial term weighted 3",
    ),
    "official_decay": (
        ["--model.optimisation.lr_decay", "0.5"],
        "official, learning rates fall linearly to 0 over the second half of the run",
    ),
    "blend_low2_area01_decay": (
        [*BLEND, *LOW2, *AREA01, "--model.optimisation.lr_decay", "0.5"],
        "blend_low2_area01, learning rates fall linearly to 0 over the second half",
    ),
    "official_decay25": (
        ["--model.optimisation.lr_decay", "0.25"],
        "official, learning rates fall linearly to 0 over the last quarter of the run",
    ),
    "official_narrow": (NARROW, "official, generator and discriminator at half the channels"),
    "official_narrow_d": (NARROW[4:], "official, the discriminator alone at half the channels"),
    "difference_redraw": (
        [*DIFFERENCE, *REDRAW],
        "difference, the redraw also trained as the official image",
    ),
}
# An inpainter draws the edit (docs/DESIGN.md, "Edits drawn by an inpainter"): a mask chosen from
# the query, then the hidden part redrawn by a network trained to fill in random boxes of real
# images in their own bin; the classifier term moves only the mask.
INPAINT = [
    "--model.generator.output", "inpaint", "--model.generator.skips", "true",
    "--model.generator.mask_downsample", "2", "--model.weights.inpaint", "10",
    "--model.weights.mask", "0.1",
]  # fmt: skip
ROWS |= {
    "inpaint": (INPAINT, "inpainter: mask from the query, hidden part redrawn by an inpainter"),
}
NO_CYCLE = ["--model.weights.cycle", "0", "--model.weights.reconstruction", "0"]
ROWS |= {
    "inpaint_l2": (
        [*INPAINT, "--model.weights.inpaint", "2", *NO_CYCLE],
        "inpainter, reconstruction weight 2 (D sharpens more), no cycle pass",
    ),
    "inpaint_l2_d2": (
        [*INPAINT, "--model.weights.inpaint", "2", *NO_CYCLE, "--model.optimisation.n_critic", "2"],
        "inpaint_l2 with two critic steps per generator step",
    ),
}
# Edits that only move the query's own pixels (docs/DESIGN.md, "Edits that move the query's
# pixels"): no colour appears that the query does not hold within `reach` pixels.
MOVE = ["--model.generator.skips", "true", "--model.generator.reach", "3"]
WARP = [*MOVE, "--model.generator.output", "warp"]
WARP_BLEND = [*MOVE, "--model.generator.output", "warp_blend"]
ROWS |= {
    "warp": (
        [*WARP, *LOW2],
        "the query resampled along a flow of at most 3 px, drawn at half resolution",
    ),
    "warp_full": (WARP, "warp, the flow drawn at full resolution"),
    "warp_low4": (
        [*WARP, "--model.generator.edit_downsample", "4"],
        "warp, the flow drawn at a quarter of the resolution (smoother bends)",
    ),
    "warp_d2_adv3": (
        [*WARP, *LOW2, *CRITIC2_ADV3],
        "warp, two critic steps per generator step, adversarial term weighted 3",
    ),
    "warp_reach6": (
        [*WARP, *LOW2, "--model.generator.reach", "6"],
        "warp with a reach of 6 px: a fold of the flow can copy a stroke that far",
    ),
    "warp_full_tv1": (
        [*WARP, "--model.weights.flow_tv", "1.0"],
        "warp_full with the flow's total variation weighted 1 (smooth bends)",
    ),
    "warp_blend_d2_adv3": (
        [*WARP_BLEND, *LOW2, *AREA01, *CRITIC2_ADV3],
        "blend_low2_area01_d2_adv3 drawn over the warped query: parts move, strokes are drawn",
    ),
    "warp_blend_area1_d2_adv3": (
        [*WARP_BLEND, *LOW2, *CRITIC2_ADV3],
        "warp_blend_d2_adv3 with the mask's area weighted 1: draw only where a move cannot do it",
    ),
    # The classifier term moves the mask and the flow only: f chooses where to draw and how to
    # move the query, D alone what is drawn (`classifier_term.drawing: fixed`).
    "warp_blend_fixed_d2_adv3": (
        [*WARP_BLEND, *LOW2, *AREA01, *CRITIC2_ADV3, *FIXED],
        "warp_blend_d2_adv3 with the drawing out of the classifier term's reach",
    ),
    "warp_blend_fixed_d2_adv3_id30": (
        [*WARP_BLEND, *LOW2, *AREA01, *CRITIC2_ADV3, *FIXED, "--model.weights.identity", "30"],
        "warp_blend_fixed_d2_adv3 with the identity term weighted 30 instead of 10",
    ),
    "warp_blend_fixed_full_d2_adv3": (
        [*WARP_BLEND, *AREA01, *CRITIC2_ADV3, *FIXED],
        "warp_blend_fixed_d2_adv3 with the flow and the drawing at full resolution (thin lines)",
    ),
    "blend_fixed_d2_adv3": (
        [*BLEND, *LOW2, *AREA01, *CRITIC2_ADV3, *FIXED],
        "blend_low2_area01_d2_adv3 with the drawing out of the classifier term's reach",
    ),
}
# Drawings in the query's own colours (docs/DESIGN.md, "Edits drawn in the query's colours"):
# each drawn pixel a mix of the query's 8 main colours, so no green or purple on a face.
PALETTE = ["--model.generator.palette", "8"]
ROWS |= {
    "blend_palette_d2_adv3": (
        [*BLEND, *LOW2, *AREA01, *CRITIC2_ADV3, *PALETTE],
        "blend_low2_area01_d2_adv3 drawn in the query's 8 main colours",
    ),
    "warp_blend_palette_d2_adv3": (
        [*WARP_BLEND, *LOW2, *AREA01, *CRITIC2_ADV3, *PALETTE],
        "warp_blend_d2_adv3 drawn in the query's 8 main colours",
    ),
}
# A second, unconditional critic that scores every 9x9 window at full resolution (docs/DESIGN.md,
# "A critic of every window"): a smudge costs the generator wherever it is, and the drawing stays
# trained by the classifier term (a fixed drawing does not learn the learning test's toy world).
PATCH9 = ["--model.discriminator.patch_size", "9", "--model.weights.patch", "1.0"]
PATCH9_W3 = ["--model.discriminator.patch_size", "9", "--model.weights.patch", "3.0"]
ROWS |= {
    "blend_low2_area01_patch9": (
        [*BLEND, *LOW2, *AREA01, *PATCH9],
        "the default blend with a critic of every 9x9 window, its term weighted 1",
    ),
    "blend_low2_area01_patch9_w3": (
        [*BLEND, *LOW2, *AREA01, *PATCH9_W3],
        "the default blend with a critic of every 9x9 window, its term weighted 3",
    ),
    "warp_blend_patch9_w3": (
        [*WARP_BLEND, *LOW2, *AREA01, *PATCH9_W3],
        "a blend over a warp with a critic of every 9x9 window, its term weighted 3",
    ),
}
# The fixed drawing trained by the classifier term in full for the first part of the run only
# (docs/DESIGN.md, "A drawing the classifier term cannot reach"): f shows which way to draw,
# then D and the keeping terms alone shape what is drawn.
ROWS |= {
    f"warp_blend_fixed_warm{share.replace('.', '')}_d2_adv3": (
        [
            *WARP_BLEND,
            *LOW2,
            *AREA01,
            *CRITIC2_ADV3,
            *FIXED,
            "--model.classifier_term.drawing_warmup",
            share,
        ],
        f"warp_blend_fixed_d2_adv3, the drawing trained in full for the first {share} of the run",
    )  # fmt: skip
    for share in ("0.3", "0.5")
}
# The patch critic also learns that a small box pasted from another image is fake (negative data
# augmentation, docs/DESIGN.md "A critic of every window"): a part that does not belong where it
# is, as a smudge does, without ever seeing a generated frame.
NDA = ["--model.discriminator.patch_negatives", "cutmix"]
CRITIC5_ADV3 = ["--model.optimisation.n_critic", "5", "--model.weights.adversarial", "3.0"]
ROWS |= {
    "blend_low2_area01_patch9_w3_nda": (
        [*BLEND, *LOW2, *AREA01, *PATCH9_W3, *NDA],
        "blend_low2_area01_patch9_w3, the patch critic also taught that pasted boxes are fake",
    ),
    "blend_low2_area01_d2_adv3_patch9_w3_nda": (
        [*BLEND, *LOW2, *AREA01, *CRITIC2_ADV3, *PATCH9_W3, *NDA],
        "blend_low2_area01_patch9_w3_nda with two critic steps, adversarial term weighted 3",
    ),
    "blend_low2_area01_d5_adv3_patch9_w3_nda": (
        [*BLEND, *LOW2, *AREA01, *PATCH9_W3, *NDA, *CRITIC5_ADV3],
        "blend_low2_area01_d2_adv3_patch9_w3_nda with five critic steps (the official number)",
    ),
}
# Read during the runs above, both critics tell the far frames from real faces no better than
# chance (docs/DESIGN.md, "What the critic sees during a run"). A frame of the blend is the query
# except where it was edited: the patch critic learns that only the windows that see an edit
# are fake (the rest are real pixels, and calling them fake is noise), and its generator term
# scores those windows alone, so that a smudge is not averaged away over the whole face.
EDITED = ["--model.discriminator.patch_fakes", "edited"]
ROWS |= {
    "blend_low2_area01_patch9_w3_edited": (
        [*BLEND, *LOW2, *AREA01, *PATCH9_W3, *EDITED],
        "blend_low2_area01_patch9_w3, the patch critic and its term on the edited windows only",
    ),
    "blend_low2_area01_d2_adv3_patch9_w3_edited": (
        [*BLEND, *LOW2, *AREA01, *CRITIC2_ADV3, *PATCH9_W3, *EDITED],
        "blend_low2_area01_patch9_w3_edited with two critic steps, adversarial term weighted 3",
    ),
}
# The critics remember the frames they were shown (docs/DESIGN.md, "What the critic sees during a
# run"): half of each step's fakes are earlier frames, so that a smudge the generator left behind
# stays fake and it cannot hop back to it (a history of refined images, as in SimGAN).
HISTORY = ["--model.discriminator.history", "512"]
ROWS |= {
    "blend_low2_area01_history": (
        [*BLEND, *LOW2, *AREA01, *HISTORY],
        "the default blend, D shown earlier frames (a history of 512) beside the current ones",
    ),
    "blend_low2_area01_patch9_w3_history": (
        [*BLEND, *LOW2, *AREA01, *PATCH9_W3, *HISTORY],
        "blend_low2_area01_patch9_w3, both critics shown earlier frames (a history of 512)",
    ),
}
# The critics learn four times faster than the generator (two time-scale update rule, Heusel et
# al., 2017), so that they keep up with what it draws.
TTUR4 = ["--model.optimisation.lr_discriminator", "8e-4"]
ROWS |= {
    "blend_low2_area01_ttur4": (
        [*BLEND, *LOW2, *AREA01, *TTUR4],
        "the default blend, D's learning rate 4x the generator's (8e-4)",
    ),
    "blend_low2_area01_patch9_w3_ttur4": (
        [*BLEND, *LOW2, *AREA01, *PATCH9_W3, *TTUR4],
        "blend_low2_area01_patch9_w3, both critics' learning rate 4x the generator's",
    ),
}
ROWS |= {
    "blend_low2_area01_ttur4_adv3": (
        [*BLEND, *LOW2, *AREA01, *TTUR4, "--model.weights.adversarial", "3.0"],
        "blend_low2_area01_ttur4 with the adversarial term weighted 3",
    ),
    "warp_blend_ttur4_adv3": (
        [*WARP_BLEND, *LOW2, *AREA01, *TTUR4, "--model.weights.adversarial", "3.0"],
        "the blend over a warp, D's learning rate 4x the generator's, adversarial term 3",
    ),
}
