"""README tables of the serving benchmarks (bench.service_vs_engine, bench.overload, bench.attention), rendered
from their committed JSON by `bench.readme_tables`."""

from __future__ import annotations

from typing import Any

from bench.readme_tables import register_table

__all__: list[str] = []

_IN_PROCESS = (("raw_engine", "raw onnxruntime session (its defaults: threads spin)"),
               ("engine", "engine as the service runs it"),
               ("pipeline", "in-process pipeline (decode + preprocess + engine as served)"))


def _number(value: float, digits: int = 1) -> str:
    return "–" if value != value else f"{value:,.{digits}f}"  # NaN -> dash


def _serving(document: dict[str, Any]) -> str:
    """One model's run: every path's figures, then the targets as measured."""
    batch = document["batch"]
    in_process = {int(size): result for size, result in document["in_process"].items()}
    ceiling = in_process[batch].get("raw_engine_images_per_s", in_process[batch]["engine_images_per_s"])
    outside = {row["path"]: row.get("CPU ms/img outside engine") for row in document["rows"]}
    lines = ["| path | images/s | p50 ms | p99 ms | server CPU ms/img | of it outside the engine | mean batch | "
             f"x raw batch {batch} |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for size in sorted(in_process):
        for kind, label in _IN_PROCESS:
            if f"{kind}_images_per_s" not in in_process[size]:
                continue
            result = in_process[size]
            rate = result[f"{kind}_images_per_s"]
            lines.append(f"| {label}, batch {size} | {_number(rate)} | {_number(result[f'{kind}_latency']['p50_ms'])}"
                         f" | {_number(result[f'{kind}_latency']['p99_ms'])} | "
                         f"{_number(result[f'{kind}_cpu_s_per_image'] * 1000, 2)} | | {size} | "
                         f"{_number(rate / ceiling, 2)} |")
    names = {"baseline": "30-line FastAPI baseline (bench/baseline_server.py)", "labelserve": "labelserve /predict",
             "labelserve-unbatched": "labelserve /predict, max batch 1",
             "labelserve-tuned": "labelserve /predict, settings from `labelserve tune`"}
    for server, levels in document["medians"].items():
        for level in levels:
            low, high = level["images_per_s_range"]
            name = names.get(server, server.replace("labelserve@", "labelserve as of commit "))
            extra = outside.get(f"{server}, c={level['concurrency']}")
            clients = "1 client" if level["concurrency"] == 1 else f"{level['concurrency']} clients"
            lines.append(f"| {name}, {clients} | "
                         f"{_number(level['images_per_s'])} ({_number(low)}–{_number(high)}) | "
                         f"{_number(level['p50_ms'])} | {_number(level['p99_ms'])} | "
                         f"{_number(level['server_cpu_s_per_image'] * 1000, 2)} | "
                         f"{'' if extra is None else _number(extra, 2)} | {_number(level['mean_batch_size'])}"
                         f" | {_number(level['images_per_s'] / ceiling, 2)} |")
    lines += ["", "| target | goal | measured | met |", "|---|---|---:|---|"]
    lines += [f"| {t['target']} | {t['goal']} | {_number(t['value'], 2)} | {'yes' if t['met'] else '**no**'} |"
              for t in document["targets"]]
    if "tuned_config" in document:
        settings = ", ".join(f"`{key}` {value}" for key, value in document["tuned_config"].items())
        lines += ["", f"`labelserve tune` chose (config.json): {settings}."]
    lines += ["", f"Medians of {document['rounds']} rounds ({document['seconds']:g} s per figure; servers alternated, "
                  f"ranges in brackets); {document['machine']['cpu_count']} CPU cores, {document['created_at'][:16]} "
                  "UTC."]
    return "\n".join(lines)


@register_table("serving-demo", "bench/results/serving-demo.json")
def _serving_demo(documents: list[dict[str, Any]]) -> str:
    return _serving(documents[0])


@register_table("serving-resnet18-q2l", "bench/results/serving-resnet18-q2l.json")
def _serving_engine_bound(documents: list[dict[str, Any]]) -> str:
    return _serving(documents[0])


@register_table("overload-demo", "bench/results/overload-demo.json")
def _overload(documents: list[dict[str, Any]]) -> str:
    document = documents[0]
    statuses = ", ".join(f"{count} × {status}" for status, count in sorted(document["statuses"].items()))
    lines = [f"{document['clients']} closed-loop clients, LABELSERVE_MAX_QUEUE_SIZE={document['queue']}, "
             f"LABELSERVE_REQUEST_TIMEOUT_S={document['timeout_s']:g}, {document['seconds']:g} s measured after "
             f"{document['warmup_s']:g} s: {statuses}; goodput {_number(document['goodput'])} answers/s against "
             f"{_number(document['reference']['images_per_s'])} images/s at 32 clients.", "",
             "| target | goal | measured | met |", "|---|---|---:|---|"]
    lines += [f"| {t['target']} | {t['goal']} | {_number(t['value'], 2)} | {'yes' if t['met'] else '**no**'} |"
              for t in document["targets"]]
    return "\n".join(lines)


@register_table("attention-demo", "bench/results/attention-demo.json")
def _attention(documents: list[dict[str, Any]]) -> str:
    document = documents[0]
    lines = ["| image | /predict | p50 ms | p99 ms | response bytes | maps |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {row['image']} | {row['variant']} | {_number(row['latency']['p50_ms'])} | "
              f"{_number(row['latency']['p99_ms'])} | {row['response_bytes']:,} | {row['maps']} |"
              for row in document["rows"]]
    lines += ["", f"One client on a kept-alive connection, {document['seconds']:g} s per row, model "
                  f"`{document['model']}`, {document['created_at'][:16]} UTC."]
    return "\n".join(lines)


_ATTACKS = {"slow_headers": "slow headers (a byte a second)", "slow_bodies": "slow bodies (1 byte/s)",
            "idle_sockets": "idle sockets", "header_bombs": "header bombs (endless header)",
            "aborts": "aborts (half a body, then a reset)"}


@register_table("hostile-demo", "bench/results/hostile-demo.json")
def _hostile(documents: list[dict[str, Any]]) -> str:
    document = documents[0]
    unloaded = document["unloaded"]
    lines = ["| attack | at once | opened in all | limit s | longest open s | normal img/s (x unloaded) | "
             "normal p99 ms (x unloaded) | cores: server / attacker | peak RSS MiB | RSS after / before | server 5xx "
             "| met |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in document["rows"]:
        attack = document["attacks"][row["attack"]]
        normal = attack["normal"]
        limit = f"{row['limit s']:.1f}" if row["limit s"] else "–"
        met = "yes" if row["met"] else "**no**: " + ", ".join(row["missed"])
        lines.append(f"| {_ATTACKS.get(row['attack'], row['attack'])} | {document['sizes'][row['attack']]:,} | "
                     f"{row['hostile connections']:,} | {limit} | {row['longest s']:.2f} | "
                     f"{_number(normal['images_per_s'])} ({row['x throughput']:.2f}) | "
                     f"{_number(normal['latency']['p99_ms'])} ({row['x p99']:.2f}) | "
                     f"{attack['cores']['server']:.2f} / {attack['cores']['attacker']:.2f} | "
                     f"{row['peak RSS MiB']:.0f} | {row['RSS after/before']:.2f} | {row['server 5xx']:g} | {met} |")
    lines += ["", f"Model `{document['model']}`; {document['concurrency']} normal closed-loop clients "
                  f"({_number(unloaded['images_per_s'])} img/s, p99 {_number(unloaded['latency']['p99_ms'])} ms, "
                  f"server {unloaded['server_cores']:.2f} cores unloaded; "
                  f"{_number(document['unloaded_after']['images_per_s'])} img/s again after the "
                  f"attacks); each attack {document['ramp_s']:g} s of ramp and {document['seconds']:g} s measured, "
                  f"from its own process on the same cores; the service's default settings but "
                  f"LABELSERVE_KEEP_ALIVE_S="
                  f"{document['settings']['keep_alive_s']}. A limit is the setting plus one "
                  f"{document['sweep_s']:g} s sweep, met when the longest stays within it and another "
                  f"{document['slack_s']:g} s (the attacker's own timing, hundreds of sockets on one event loop); "
                  f"{document['machine']['cpu_count']} CPU cores, "
                  f"{document['created_at'][:16]} UTC."]
    return "\n".join(lines)


@register_table("monitoring", "bench/results/monitoring.json")
def _monitoring(documents: list[dict[str, Any]]) -> str:
    document = documents[0]
    lines = ["| shift (after 1,000 ordinary scenes) | label | window | images until flagged | other labels' largest "
             "drift | other labels flagged | flagged on the ordinary scenes |", "|---|---|---:|---:|---:|---|---|"]
    for run in document["delay"]:
        lines.append(f"| {run['shift']} | `{run['label']}` | {run['window']:,} | {run['images_until_flagged']} | "
                     f"{run['other_labels_max_drift']:.3f} | {', '.join(run['other_labels_flagged']) or 'none'} | "
                     f"{', '.join(run['flagged_on_normal']) or 'none'} (largest drift "
                     f"{run['normal_max_drift']:.3f}) |")
    lines += ["", "| model, 32 clients | monitoring on, img/s | off, img/s | on / off | server CPU ms/img on | off |",
              "|---|---:|---:|---:|---:|---:|"]
    for row in document["cost"]:
        lines.append(f"| {row['model']} | {_number(row['on_images_per_s'])} | {_number(row['off_images_per_s'])} | "
                     f"{row['ratio']:.3f} | {row['cpu_ms_per_image_on']:.2f} | {row['cpu_ms_per_image_off']:.2f} |")
    large = document["large_model"]
    shadow = document["shadow"]["summary"]
    lines += ["", f"A {large['labels']:,}-label model: {large['observe_ms_per_batch']:.2f} ms of the engine thread per "
                  f"batch of {large['batch']} to count it, a report in {large['report_ms']:.1f} ms, "
                  f"{large['window_bytes'] / 2**20:.1f} MiB of window; its gauges export {large['labels_exported']} "
                  f"labels ({large['per_label_series']} per-label series).", "",
              "| demo, 8 clients | img/s | p50 ms | p99 ms | copies made | dropped |", "|---|---:|---:|---:|---:|---:|"]
    for mode, title in (("off", "no shadow"), ("on", "a second version shadowing 100 %")):
        row = shadow[mode]
        lines.append(f"| {title} | {_number(row['images_per_s'])} | {_number(row['p50_ms'])} | "
                     f"{_number(row['p99_ms'])} | {row['mirrored']:,} | {row['dropped']:,} |")
    lines += ["", f"Closed-loop clients on the same 2 cores; medians of {document['rounds']} alternated rounds of "
                  f"{document['seconds']:g} s; {document['created_at'][:16]} UTC."]
    return "\n".join(lines)


@register_table("feedback", "bench/results/feedback.json")
def _feedback(documents: list[dict[str, Any]]) -> str:
    document = documents[0]
    lines = ["| the camera the demo now sees | micro F1, validation thresholds | after `labelserve calibrate` | "
             "labels whose threshold moved | labels better / worse |", "|---|---:|---:|---:|---|"]
    for row in document["gain"]:
        lines.append(f"| {row['shift']} | {row['micro_f1_before']:.3f} | **{row['micro_f1_after']:.3f}** | "
                     f"{row['labels_changed']} of {len(row['per_label_f1_after'])} | {row['labels_better']} / "
                     f"{row['labels_worse']} |")
    summary = document["cost"]["summary"]
    lines += ["", "| demo, 32 clients | img/s | p99 ms | server CPU ms per image | feedback sent | feedback p99 ms |",
              "|---|---:|---:|---:|---:|---:|"]
    for mode, row in summary.items():
        feedback_p99 = "–" if row["feedback_p99_ms"] is None else _number(row["feedback_p99_ms"])
        lines.append(f"| answers {mode} | {_number(row['images_per_s'])} | {_number(row['p99_ms'])} | "
                     f"{_number(row.get('server_cpu_ms_per_image', float('nan')), 2)} | {row['feedback']:,} | "
                     f"{feedback_p99} |")
    gain = document["gain"][0]
    lines += ["", f"Feedback on {gain['feedback']} answers, F1 measured on the next {gain['measured']} scenes of the "
                  f"generator (another seed than the validation split), each version answering the same images. "
                  f"Kept / not kept: {document['cost']['kept_over_not_kept']:.3f}; with 32 reviewers / without: "
                  f"{document['cost']['reviewers_over_none']:.3f} in throughput, "
                  f"{document['cost'].get('server_capacity_reviewers_over_none', float('nan')):.3f} in the server's "
                  f"capacity (its CPU per answered image, the feedback's included) "
                  f"(medians of {document['rounds']} alternated rounds "
                  f"of {document['seconds']:g} s, clients on the same 2 cores); {document['created_at'][:16]} UTC."]
    return "\n".join(lines)


_PROTOCOL_NAMES = {"predict": "`/predict` (multipart)", "oip-http": "OIP over HTTP (binary)", "grpc": "OIP over gRPC"}


@register_table("protocols-adapters", "bench/results/protocols-adapters.json")
def _protocols_adapters(documents: list[dict[str, Any]]) -> str:
    document = documents[0]
    lines = ["| model | server | protocol | clients | img/s | p50 ms | p99 ms | errors |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    models = list(dict.fromkeys(row["model"] for row in document["rows"]))
    order = list(_PROTOCOL_NAMES)
    rows = sorted(document["rows"], key=lambda row: (models.index(row["model"]), row["concurrency"],
                                                     order.index(row["protocol"]), row["server"] == "labelserve"))
    for row in rows:
        server = "this version" if row["server"] == "labelserve" else f"before (`{row['server']}`)"
        lines.append(f"| {row['model']} | {server} | {_PROTOCOL_NAMES[row['protocol']]} | {row['concurrency']} | "
                     f"{_number(row['images_per_s'])} | {_number(row['p50_ms'])} | {_number(row['p99_ms'])} | "
                     f"{row['errors']} |")
    lines += ["", f"Medians of {document['rounds']} rounds of {document['seconds']:g} s per cell, the protocols' "
                  "order rotated every round, one server with default settings, 640x480 JPEGs, one image per "
                  f"request; {document['machine']['cpu_count']} cores shared by the server and the clients."]
    return "\n".join(lines)


_CLIENT_NAMES = {"own": "own", "plain": "plain (httpx / tritonclient)"}


def _cells(document: dict[str, Any]) -> dict[tuple[str, str, str, str, int], dict[str, Any]]:
    return {(r["model"], r["server"], r["protocol"], r["client"], r["concurrency"]): r for r in document["rows"]}


@register_table("protocols-light", "bench/results/protocols.json")
def _protocols_light(documents: list[dict[str, Any]]) -> str:
    """The light model where the front end decides: each protocol and client against the pipeline and the
    baseline, with what the server formed and used."""
    document = documents[0]
    cell, model = _cells(document), "light-q2l"
    pipeline = document["pipeline"][model]
    lines = ["| server | protocol | client | 32 clients: img/s | / pipeline b16 | / baseline | mean batch | "
             "server cores | client CPU ms/img | 1 client: p50 ms | p99 ms |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for server in ("baseline", "labelserve"):
        for protocol in _PROTOCOL_NAMES:
            for client in _CLIENT_NAMES:
                busy, lone = cell.get((model, server, protocol, client, 32)), cell.get((model, server, protocol,
                                                                                           client, 1))
                base = cell.get((model, "baseline", "predict", client, 32))
                if busy is None or lone is None or base is None:
                    continue
                lines.append(f"| {'baseline' if server == 'baseline' else 'labelserve'} | "
                             f"{_PROTOCOL_NAMES[protocol]} | {_CLIENT_NAMES[client]} | "
                             f"{_number(busy['images_per_s'])} | "
                             f"{busy['images_per_s'] / pipeline['16']['images_per_s']:.2f} | "
                             f"{busy['images_per_s'] / base['images_per_s']:.2f} | "
                             f"{_number(busy['mean_batch_size'])} | "
                             f"{busy['server_cores']:.2f} | {busy['client_cpu_ms_per_image']:.2f} | "
                             f"{lone['p50_ms']:.2f} | {lone['p99_ms']:.2f} |")
    met = [t for t in document["targets"] if t["met"] is not None]
    lines += ["", f"In-process pipeline (decode + preprocess + engine as served, no server, no client): batch 16 "
                  f"{_number(pipeline['16']['images_per_s'])} img/s, batch 1 {_number(pipeline['1']['images_per_s'])} "
                  f"img/s (p50 {pipeline['1']['p50_ms']:.2f} ms). Issue 22's targets: "
                  f"{sum(bool(t['met']) for t in met)} of {len(met)} met. Medians of {document['rounds']} rounds of "
                  f"{document['seconds']:g} s per cell, rotated; {document['machine']['cpu_count']} cores shared by "
                  f"server and client; {document['created_at'][:16]} UTC."]
    return "\n".join(lines)


@register_table("protocols-before-after", "bench/results/protocols.json")
def _protocols_before_after(documents: list[dict[str, Any]]) -> str:
    """Every bench model, protocol and client on this version against the commit before issue 22's part 4."""
    document = documents[0]
    cell = _cells(document)
    lines = ["| model | protocol | client | clients | before img/s | now img/s | now / before | before p50 ms | "
             "now p50 ms |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for change in document["changes"]:
        before = cell[(change["model"], change["against"], change["protocol"], change["client"],
                       change["concurrency"])]
        now = cell[(change["model"], "labelserve", change["protocol"], change["client"], change["concurrency"])]
        lines.append(f"| {change['model']} | {_PROTOCOL_NAMES[change['protocol']]} | {_CLIENT_NAMES[change['client']]} "
                     f"| {change['concurrency']} | {_number(before['images_per_s'])} | {_number(now['images_per_s'])} "
                     f"| {change['img/s ratio']:.2f} | {before['p50_ms']:.2f} | {now['p50_ms']:.2f} |")
    against = sorted({change["against"] for change in document["changes"]})
    lines += ["", f"Before: {', '.join(f'`{name}`' for name in against)}. Same run, servers up side by side, "
                  f"medians of {document['rounds']} rotated rounds of {document['seconds']:g} s."]
    return "\n".join(lines)


@register_table("request-timeline", "bench/results/request-timeline.json")
def _request_timeline(documents: list[dict[str, Any]]) -> str:
    """A lone request's phases in microseconds, per model and server variant."""
    document = documents[0]
    results = document["results"]
    names = [f"{r['model']}, {'lone session off' if 'lone_session=false' in r['variant'] else 'default'}"
             for r in results]
    lines = ["| phase (median µs) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(results)]
    for phase in document["order"]:
        lines.append(f"| {phase} | " + " | ".join(_number(r["median_us"].get(phase, float("nan")), 0)
                                                  for r in results) + " |")
    lines.append("| **client p50** | " + " | ".join(f"**{_number(1000 * r['client_p50_ms'], 0)}**"
                                                     for r in results) + " |")
    lines += ["", f"One client, one 640x480 JPEG at a time to /predict for {document['seconds']:g} s per column "
                  f"({', '.join(str(r['requests']) for r in results)} requests); {document['created_at'][:16]} UTC."]
    return "\n".join(lines)
