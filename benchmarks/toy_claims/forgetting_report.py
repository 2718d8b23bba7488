"""The forgetting regime's outputs from its results (`forgetting.run`): results.json, the PNG
curves and docs/toy_grounding/forgetting.md. Every number in the doc is read from the results;
the expected outcome (written before the runs) and the reading are quoted from their own files."""

from __future__ import annotations

from pathlib import Path

from scenetg.atomic_files import save_png

from .common import logged_steps, plot_lines, write_json

README_ROWS = (
    # (comparison key, metric, label, claim's direction)
    ("a vs start", "qa", "(a) SFT vs start", "lower"),
    ("b vs start", "qa", "(b) GRPO β_ts=0 vs start", "not lower"),
    ("b vs a", "qa", "(b) GRPO β_ts=0 vs (a) SFT", "higher"),
    ("b vs start", "grounding", "(b) GRPO β_ts=0 vs start", "higher"),
    ("b vs a", "grounding", "(b) GRPO β_ts=0 vs (a) SFT", "not lower"),
    ("b vs c", "grounding", "(b) β_ts=0 vs (c) β_ts=β", "higher"),
    ("b vs c", "qa", "(b) β_ts=0 vs (c) β_ts=β", "not lower"),
    ("b vs d", "qa", "(b) β=0.04 vs (d) β=0", "higher"),
)
FOLLOWUP_ROWS = (
    # (comparison key in the follow-up's paired tests, metric, claim's direction): claim 3 at 4x
    ("a vs start", "qa", "lower"),
    ("b vs start", "qa", "not lower"),
    ("b vs start", "grounding", "higher"),
    ("b vs a", "qa", "higher"),
    ("b vs a", "grounding", "not lower"),
)
METRIC = {"qa": "palette-QA accuracy", "grounding": "R1@0.5"}
KEY = {"qa": "qa_acc", "grounding": "R1@0.5"}


def fmt(x, nd=3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.1e}"
    return str(x)


def pair_text(p: dict) -> str:
    return f"+{p['gained']} / −{p['lost']}, p={p['p']:.2g}"


def side(results: dict, name: str, metric: str) -> float:
    """Mean of `metric` for a variant key or ``start``."""
    return results["start"][KEY[metric]] if name == "start" else results["means"][name][KEY[metric]]


def first_last(r: dict, key: str) -> str:
    """``first → last`` of a run's logged `key` (``key_first``, ``key_last``), or – when not logged."""
    return f"{fmt(r.get(key + '_first'))} → {fmt(r.get(key + '_last'))}" if r.get(key + "_first") is not None else "–"


def kl_and_training_cells(r: dict) -> str:
    """A run's last six table cells: held-out KL (timestamp, other), training KL (last 10 steps),
    reward and SFT loss first → last."""
    return (f"{fmt(r.get('kl_timestamp'))} | {fmt(r.get('kl_other'))} | {fmt(r.get('kl_timestamp_last'))} | "
            f"{fmt(r.get('kl_other_last'))} | {first_last(r, 'reward')} | {first_last(r, 'loss')} |")


def readme_rows(results: dict) -> list[dict]:
    rows = []
    for comp, metric, label, want in README_ROWS:
        fav, other = comp.split(" vs ")
        pool = results["paired"][f"{comp}|{metric}"]["pooled"]
        rows.append({"comparison": label, "metric": f"{METRIC[metric]} (held-out, mean over seeds)",
                     "a": round(side(results, other, metric), 3), "b": round(side(results, fav, metric), 3),
                     "paired": pair_text(pool), "shows": verdict(pool, want), "claim": want})
    fu = results.get("followup") or {}
    if fu.get("runs", {}).get("b"):  # the follow-up at 4x compute, both sides
        names, n = fu["variants"], len(fu["seeds"])
        for comp, metric, want in FOLLOWUP_ROWS:
            fav, other = comp.split(" vs ")
            pool = fu["paired"][f"{comp}|{metric}"]["pooled"]
            a = results["start"][KEY[metric]] if other == "start" else fu["means"][other][KEY[metric]]
            rows.append({"comparison": f"{names[fav]} vs {names.get(other, other)} (follow-up, {n} seeds)",
                         "metric": f"{METRIC[metric]} (held-out, mean over seeds)", "a": round(a, 3),
                         "b": round(fu["means"][fav][KEY[metric]], 3), "paired": pair_text(pool),
                         "shows": verdict(pool, want), "claim": want})
    return rows


def plots(curves: dict, out: Path, names: dict) -> list[str]:
    """Per-step training curves (GRPO reward, logged KL on timestamp / other tokens; SFT loss)."""
    from scenetg.rl.curves import read_metrics

    made = []
    for key, ylabel in (("reward", "mean reward"), ("kl_timestamp", "KL, timestamp tokens (k3)"),
                        ("kl_other", "KL, other tokens (k3)")):
        series = {}
        for run, c in curves.items():
            if c["algo"] == "grpo":
                rows = logged_steps(c["dir"])
                series[f"{names[run[0]]} (seed {run[1:]})"] = [(r["step"], r[key]) for r in rows
                                                               if r.get(key) is not None]
        plot_lines(series, out / f"{key}.png", f"GRPO from the two-skill start: {key}", "step", ylabel)
        made.append(f"{key}.png")
    series = {f"{names[run[0]]} (seed {run[1:]})": [(r["step"], r["loss"]) for r in read_metrics(c["dir"] / "metrics.jsonl")
                                                     if "loss" in r]
              for run, c in curves.items() if c["algo"] == "sft"}
    plot_lines(series, out / "sft_loss.png", "(a) SFT on grounding rows: loss", "step", "loss")
    made.append("sft_loss.png")
    return made


def tradeoff_plot(results: dict, path: Path) -> None:
    """Held-out palette-QA accuracy against R1@0.5, one point per run, the start as a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for v, rs in results["runs"].items():
        ax.scatter([r["R1@0.5"] for r in rs.values()], [r["qa_acc"] for r in rs.values()],
                   label=results["variants"][v], alpha=0.8)
    fu = results.get("followup") or {}
    for v, marker in (("a", "x"), ("b", "+")):
        rs = (fu.get("runs") or {}).get(v) or {}
        if rs:
            ax.scatter([r["R1@0.5"] for r in rs.values()], [r["qa_acc"] for r in rs.values()], marker=marker, s=70,
                       label=f"{fu['variants'][v]} steps (follow-up)")
    ax.scatter([results["start"]["R1@0.5"]], [results["start"]["qa_acc"]], marker="*", s=200, c="k", label="start")
    ax.set(xlabel="held-out grounding R1@0.5", ylabel="held-out palette-QA accuracy",
           title="What each run kept (QA) and learnt (grounding)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_png(fig, path)


def reading_values(res: dict) -> dict:
    """The numbers the reading (``forgetting/reading.md``, a format string) quotes, from the results:
    ``{a_qa}`` is variant a's mean palette-QA accuracy, ``{p_a_vs_start_qa}`` its pooled paired test
    against the start, and so on."""
    out = {"shipped_r1": fmt(res["shipped"]["R1@0.5"]), "start_r1": fmt(res["start"]["R1@0.5"]),
           "shipped_qa": fmt(res["shipped"]["qa_acc"]), "start_qa": fmt(res["start"]["qa_acc"]),
           "n_facts": res["facts"]["n_facts"], "start_facts": res["facts"]["kept"]["start"]}
    for v, m in res["means"].items():
        for k in ("R1@0.5", "mIoU", "qa_acc", "kl_timestamp", "kl_other", "kl_timestamp_last", "kl_other_last"):
            out[f"{v}_{k.replace('R1@0.5', 'r1').replace('qa_acc', 'qa')}"] = fmt(m.get(k))
    for key, t in res["paired"].items():
        comp, metric = key.split("|")
        out[f"p_{comp.replace(' ', '_')}_{metric}"] = pair_text(t["pooled"])
    out.update(followup_values(res))
    out["b_equals_d"] = ("the same score on every held-out item in every seed" if res.get("b_equals_d_per_item")
                         else "different scores on some held-out items")
    tried = res.get("tried_at_time") or {}
    out["tried_qa"] = fmt(tried.get("stage", {}).get("qa_acc"))
    return out


def followup_values(res: dict) -> dict:
    """The follow-up's numbers for the reading: ``{f_a_qa}`` (SFT 4x's mean palette-QA accuracy),
    ``{f_b_qa_seeds}`` (GRPO 4x's per seed), ``{f_p_b_vs_a_qa}`` (pooled paired test), ...,
    and ``{f_claim3}``: whether claim 3 shows at 4x by the summary rows' rule."""
    fu = res.get("followup") or {}
    out: dict = {"f_sft_steps": fu.get("sft_steps"), "f_grpo_steps": fu.get("grpo_steps"),
                 "f_sequences": fu.get("sequences_per_run"), "f_n": len(fu.get("seeds") or [])}
    for v, rs in (fu.get("runs") or {}).items():
        m = fu["means"][v]
        for k, name in (("R1@0.5", "r1"), ("mIoU", "miou"), ("qa_acc", "qa"), ("kl_timestamp", "kl_timestamp"),
                        ("kl_other", "kl_other"), ("kl_timestamp_last", "kl_timestamp_last"),
                        ("kl_other_last", "kl_other_last"), ("reward_first", "reward_first"),
                        ("reward_last", "reward_last")):
            out[f"f_{v}_{name}"] = fmt(m.get(k))
            out[f"f_{v}_{name}_seeds"] = ", ".join(fmt(r.get(k)) for r in rs.values())
        out[f"f_{v}_facts_seeds"] = ", ".join(str(r["facts_kept"]) for r in rs.values())
        out[f"f_{v}_all_facts_seeds"] = sum(r["facts_kept"] == res["facts"]["n_facts"] for r in rs.values())
    for key, t in (fu.get("paired") or {}).items():
        comp, metric = key.split("|")
        pool = t["pooled"]
        out[f"f_p_{comp.replace(' ', '_')}_{metric}"] = pair_text(pool)
        out[f"f_s_{comp.replace(' ', '_')}_{metric}"] = f"{pool['seeds_ahead']} seeds ahead, {pool['seeds_behind']} behind"
        out[f"f_nsig_{comp.replace(' ', '_')}_{metric}"] = sum(p["p"] < 0.05 for p in t["per_seed"])
    shows = {f"{comp}|{metric}": verdict(fu["paired"][f"{comp}|{metric}"]["pooled"], want)
             for comp, metric, want in FOLLOWUP_ROWS} if fu.get("paired") else {}
    need = ("a vs start|qa", "b vs start|qa", "b vs start|grounding", "b vs a|qa")
    out["f_claim3"] = ("shows" if shows and all(shows[k] == "yes" for k in need) else "does not show")
    out["f_claim3_rows"] = "; ".join(f"{k.replace('|', ', ')}: {v}" for k, v in shows.items())
    return out


def verdict(pool: dict, want: str) -> str:
    from .forgetting import verdict as rule

    return rule(pool, want)


def write_report(results: dict, curves: dict, docs: Path, expected: Path) -> dict:
    """results.json, PNGs and forgetting.md under `docs`; returns the README summary."""
    from .forgetting import REGIME

    folder = docs / REGIME
    write_json(folder / "results.json", results)
    pngs = plots(curves, folder, results["variants"])
    tradeoff_plot(results, folder / "tradeoff.png")
    pngs.insert(0, "tradeoff.png")
    rows = readme_rows(results)
    reading = folder / "reading.md"
    text = doc(results, rows, pngs, expected.read_text() if expected.is_file() else "(missing)",
               reading.read_text().format_map(reading_values(results)) if reading.is_file() else "(not written yet)")
    (docs / f"{REGIME}.md").write_text(text)
    return {"regime": REGIME,
            "claim": "claims 2 and 3: GRPO learns grounding without SFT's forgetting; token-aware KL "
                     "lets timestamps move while other knowledge stays",
            "readme_rows": [{k: r[k] for k in ("comparison", "metric", "a", "b", "paired", "shows")} for r in rows]}


def doc(res: dict, rows: list[dict], pngs: list[str], expected: str, reading: str) -> str:
    sz, st, names = res["sizes"], res["settings"], res["variants"]
    c = res["compute"]
    out = [
        "# Forgetting: GRPO vs SFT, token-aware KL (issue 16, claims 2 and 3)",
        "",
        "Generated by `benchmarks/toy_claims/forgetting.py` (`run()`) from "
        "[forgetting/results.json](forgetting/results.json); do not edit by hand.",
        "",
        "## Expected, written before the runs",
        "",
        expected.strip(),
        "",
        "## Setup",
        "",
        "- **Task**: the standard toy videos (`scenetg.toy_task`, 8 cells, 4–6 flat-colour scenes, "
        "16 frames at 64 px). Skill 1, grounding: \"the green scene\" → `<answer>S - E</answer>`. "
        "Skill 2, palette-order knowledge asked with the video in the prompt: \"Which colour comes "
        "after green?\" → `cyan` (the palette red, orange, yellow, green, cyan, blue, purple, pink read "
        "as a circle; 8 colours × after/before = 16 facts; the toy stand-in for the text knowledge of a "
        "pretrained MLLM that grounding does not use). Right when the answer names that colour and no "
        "other palette colour (chance 1/8). Held-out questions repeat the 16 facts with other videos, so "
        "the paired tests' items are not independent facts; the number of facts kept (right on at least "
        "half of their held-out questions) is given beside the accuracy.",
        f"- **Data**: {sz['train_videos']} training videos × {sz['per_video']} grounding queries "
        f"(+ {sz['facts_per_video']} palette questions each in the SFT stage only); held out: "
        f"{sz['heldout_videos']} other videos × 1 grounding query and 1 palette question "
        f"({res['start']['n_ground']} + {res['start']['n_qa']} held-out items).",
        f"- **Start**: the shipped toy SFT checkpoint, then an SFT stage of {sz['stage_steps']} steps "
        f"(batch {st['sft_batch']}, lr {sz['stage_lr']:g} cosine) on the mix of grounding rows and palette "
        f"questions (`scenetg train --algo sft` with `sft.questions`).",
        f"- **Variants** (grounding rows only, from the start): (a) SFT, {sz['sft_steps']} steps × batch "
        f"{st['sft_batch']}, lr {sz['sft_lr']:g} constant; (b–d) GRPO, {sz['grpo_steps']} steps × "
        f"{sz['prompts']} prompts × {st['generations']} rollouts, lr {st['grpo_lr']:g} constant, rewards "
        f"{st['rewards']}: (b) β={st['beta']}, β_ts=0; (c) β_ts=β={st['beta']}; (d) β=0.",
        f"- **Equal training compute** = the same number of sequences through the training loss: "
        f"{sz['sequences_per_run']} per run (GRPO: steps × prompts × rollouts; SFT: steps × batch). "
        f"Per sequence the loss's forward and backward cost about the same in both; GRPO also spends "
        f"generation and a reference pass on them, so it gets more wall time.",
        f"- **Seeds**: {', '.join(map(str, sz['seeds']))} (training seed and data order; same data and start).",
        f"- **KL to the start** (held-out, every variant): exact KL(π‖π_start) per answer token, "
        f"on each model's own greedy answers to the first {sz['kl_queries']} held-out grounding "
        f"queries, averaged over timestamp tokens (`timestamp_token_mask`) and over the other answer "
        f"tokens. GRPO's logged `kl_timestamp` / `kl_other` (k3 on its training rollouts, last 10 steps) "
        f"are given beside it.",
        f"- **Compute used**: {c['cpu_s']:.0f} s CPU ({c['cpu_s'] / 60:.1f} min, one torch thread), "
        f"{c['wall_s']:.0f} s wall under the day's shared load: start stage {c.get('stage_cpu_s', 0):.0f} s, "
        f"{len(sz['seeds']) * 3} GRPO runs {c.get('grpo_cpu_s', 0):.0f} s, {len(sz['seeds'])} SFT runs "
        f"{c.get('sft_cpu_s', 0):.0f} s, {len(res['runs']) * len(sz['seeds']) + 2 + 2 * len(sz.get('followup_seeds') or ())} evals "
        f"{c.get('eval_cpu_s', 0):.0f} s, "
        f"the follow-up's SFT runs {c.get('followup_sft_cpu_s', 0):.0f} s and GRPO runs "
        f"{c.get('followup_grpo_cpu_s', 0):.0f} s, data the rest. The tried colour-at-time stage and its evals took {c.get('tried_cpu_s', 0):.0f} s CPU more "
        "(the other probes named in the expected outcome are not counted).",
        f"- **Size against the budget**: the main runs were sized to ~20 min of single-thread CPU, not the issue's ~90 min. "
        f"A GRPO step here costs ~{c.get('grpo_cpu_s', 0) / max(1, 3 * len(sz['seeds']) * sz['grpo_steps']):.2f} s CPU "
        f"(4 prompts × 8 rollouts, with the reference pass), so {sz['grpo_steps']} steps per run is little "
        f"training; a 90-min run would give each run ~4× the steps ({4 * sz['grpo_steps']} GRPO steps, "
        f"{4 * sz['sft_steps']} SFT steps) at the same seeds, or twice the steps and twice the held-out set; the "
        f"follow-up below runs that 4× size for (a) and (b).",
        "",
        "## The start",
        "",
        "| model | R1@0.5 | R1@0.3 | mIoU | palette-QA acc | facts kept |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    kept, nf = res["facts"]["kept"], res["facts"]["n_facts"]
    for label, s, k in (("shipped toy SFT (before the stage)", res["shipped"], "shipped"),
                        ("start (after the stage)", res["start"], "start")):
        out.append(f"| {label} | {fmt(s['R1@0.5'])} | {fmt(s['R1@0.3'])} | {fmt(s['mIoU'])} | {fmt(s['qa_acc'])} | "
                   f"{kept[k]}/{nf} |")
    out += ["", f"Start's first held-out palette answers: {', '.join(repr(a) for a in res['start_qa_sample'])}."]
    tried = res.get("tried_at_time")
    if tried:
        out += ["", "**Tried first, not learnt**: colour-at-time questions (\"What colour is the scene at 12 s?\", "
                "a whole second strictly inside a scene; 2 per training video beside 2 grounding queries) as the "
                f"second skill, SFT stage of {tried['steps']} steps at lr {tried['lr']:g} (cosine). Held-out "
                f"accuracy: shipped {fmt(tried['shipped']['qa_acc'])}, after the stage "
                f"{fmt(tried['stage']['qa_acc'])} (chance 1/4–1/6 among the video's colours); most frequent "
                f"answers {tried['answers']}; grounding R1@0.5 {fmt(tried['stage']['R1@0.5'])}. The tiny model "
                "learnt the answer's prior, not to read the colour at a time, so the regime uses the palette facts."]
    out += [
            "", "## Per seed", "",
            "| variant | seed | R1@0.5 | mIoU | palette-QA acc | KL ts (held-out) | KL other (held-out) "
            "| KL ts (train, last 10) | KL other (train, last 10) | reward first→last 10 | SFT loss first→last |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| start | – | {fmt(res['start']['R1@0.5'])} | {fmt(res['start']['mIoU'])} | "
            f"{fmt(res['start']['qa_acc'])} | 0 | 0 | – | – | – | – |"]
    for v, rs in res["runs"].items():
        for seed, r in rs.items():
            out.append(f"| {names[v]} | {seed} | {fmt(r['R1@0.5'])} | {fmt(r['mIoU'])} | {fmt(r['qa_acc'])} | "
                       f"{kl_and_training_cells(r)}")
    out += ["", "Means over seeds:", "",
            "| variant | R1@0.5 | mIoU | palette-QA acc | facts kept (per seed) | KL ts (held-out) | KL other (held-out) |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for v, m in res["means"].items():
        per_seed = ", ".join(str(kept[f"{v}{s}"]) for s in sz["seeds"])
        out.append(f"| {names[v]} | {fmt(m.get('R1@0.5'))} | {fmt(m.get('mIoU'))} | {fmt(m.get('qa_acc'))} | "
                   f"{per_seed} of {nf} | {fmt(m.get('kl_timestamp'))} | {fmt(m.get('kl_other'))} |")
    out += ["", "## Paired tests (same held-out items; hits gained / lost by the first against the second)", "",
            "Grounding: hit = IoU ≥ 0.5. Palette QA: hit = a right answer. Exact two-sided sign test on the "
            "discordant items; pooled = the sums over seeds (seeds ahead / behind in brackets).", "",
            "| comparison | metric | " + " | ".join(f"seed {s}" for s in sz["seeds"]) + " | pooled |",
            "| --- | --- | " + " | ".join("---" for _ in sz["seeds"]) + " | --- |"]
    for key, t in res["paired"].items():
        comp, metric = key.split("|")
        fav, other = comp.split(" vs ")
        label = f"{names[fav]} vs {names.get(other, other)}"
        pool = t["pooled"]
        out.append(f"| {label} | {METRIC[metric]} | " + " | ".join(pair_text(p) for p in t["per_seed"])
                   + f" | **{pair_text(pool)}** ({pool['seeds_ahead']}↑ {pool['seeds_behind']}↓) |")
    out += ["", "## Summary rows (for the README)", "",
            "| comparison | metric | a (second) | b (first) | paired, pooled | claim's direction | shows |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(f"| {r['comparison']} | {r['metric']} | {fmt(r['a'])} | {fmt(r['b'])} | {r['paired']} | "
                   f"{r['claim']} | {r['shows']} |")
    out += followup_section(res)
    out += ["", "`shows`: *higher* / *lower* — yes when the pooled sign test has the claimed sign at p < 0.05, "
            "mixed when the sign is right but p ≥ 0.05, no otherwise; *not lower* — yes unless the first loses "
            "significantly (p < 0.05).", "", "## Curves", ""]
    out += [f"![{p}](forgetting/{p})" for p in pngs]
    out += ["", "## Reading", "", reading.strip(), ""]
    return "\n".join(out)


def followup_section(res: dict) -> list[str]:
    """The doc's section on the follow-up at 4x compute: per seed, means, paired tests."""
    fu = res.get("followup") or {}
    if not (fu.get("runs") or {}).get("b"):
        return []
    names, nf = fu["variants"], res["facts"]["n_facts"]
    out = ["", f"## Follow-up at {fu['mult']}× compute: SFT and GRPO (b), {len(fu['seeds'])} seeds", "",
           f"Decided after the main runs (SFT seeds 0, 1 first; its expected outcome, above, was written before "
           f"the GRPO runs and SFT seeds 2–4). From the same start, on the same grounding rows and held-out sets: "
           f"{names['a']} = {fu['sft_steps']} steps × batch {res['settings']['sft_batch']} at lr "
           f"{res['sizes']['sft_lr']:g}; {names['b']} = {fu['grpo_steps']} steps × {res['sizes']['prompts']} prompts "
           f"× {res['settings']['generations']} rollouts at lr {res['settings']['grpo_lr']:g}; both "
           f"{fu['sequences_per_run']} sequences through the loss. Seeds {', '.join(map(str, fu['seeds']))}.", "",
           "| variant | seed | R1@0.5 | mIoU | palette-QA acc | facts kept | KL ts (held-out) | KL other (held-out) "
           "| KL ts (train, last 10) | KL other (train, last 10) | reward first→last 10 | SFT loss first→last |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
           f"| start | – | {fmt(res['start']['R1@0.5'])} | {fmt(res['start']['mIoU'])} | {fmt(res['start']['qa_acc'])} "
           f"| {res['facts']['kept']['start']}/{nf} | 0 | 0 | – | – | – | – |"]
    for v in ("a", "b"):
        for seed, r in fu["runs"][v].items():
            out.append(f"| {names[v]} | {seed} | {fmt(r['R1@0.5'])} | {fmt(r['mIoU'])} | {fmt(r['qa_acc'])} | "
                       f"{r['facts_kept']}/{nf} | {kl_and_training_cells(r)}")
    for v in ("a", "b"):
        m = fu["means"][v]
        out.append(f"| {names[v]} | mean | {fmt(m.get('R1@0.5'))} | {fmt(m.get('mIoU'))} | {fmt(m.get('qa_acc'))} | "
                   f"{fmt(m.get('facts_kept'), 1)}/{nf} | {fmt(m.get('kl_timestamp'))} | {fmt(m.get('kl_other'))} | "
                   f"{fmt(m.get('kl_timestamp_last'))} | {fmt(m.get('kl_other_last'))} | – | – |")
    seeds = fu["seeds"]
    out += ["", "Paired tests of the follow-up (hits gained / lost by the first against the second, seed k against "
            "seed k; pooled = sums over seeds, seeds ahead / behind in brackets):", "",
            "| comparison | metric | " + " | ".join(f"seed {s}" for s in seeds) + " | pooled |",
            "| --- | --- | " + " | ".join("---" for _ in seeds) + " | --- |"]
    for key, t in fu["paired"].items():
        comp, metric = key.split("|")
        fav, other = comp.split(" vs ")
        pool = t["pooled"]
        out.append(f"| {names[fav]} vs {names.get(other, other)} | {METRIC[metric]} | "
                   + " | ".join(pair_text(p) for p in t["per_seed"])
                   + f" | **{pair_text(pool)}** ({pool['seeds_ahead']}↑ {pool['seeds_behind']}↓) |")
    return out
