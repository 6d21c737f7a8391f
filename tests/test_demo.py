"""`mothermodel demo` runs end to end in a fresh folder and leaves a real workspace."""

import json

from conftest import run_cli, run_proc


def test_demo(tmp_path):
    """The whole demo with a tiny random encoder (CI's README step runs it with the real MiniLM)."""
    from mothermodel.demo import world
    from mothermodel.trainer.encoder import write_tiny_encoder

    words = sorted({w.lower().strip(",.!?") for r in world.tickets(n=200).column("text").to_pylist() for w in r.split()})
    enc = write_tiny_encoder(tmp_path / "enc", words=words)
    d = tmp_path / "demo"
    p = run_proc("demo", "--dir", d, "--encoder", enc)
    assert p.returncode == 0, p.stderr
    assert "ticket_topic v2 (updated)" in p.stdout and "mentions_money (lf) -> v2 (updated)" in p.stdout
    assert (d / "dag.png").read_bytes()[:4] == b"\x89PNG"
    res = json.loads(run_cli("status", "--json", ws=d).out)
    assert {t["name"] for t in res["tasks"]} == {"ticket_topic", "billing_kind", "urgency", "sentiment"}
    # The watch tick relabelled, refitted, retrained and redistilled what the LF edit made stale: nothing
    # is left stale, and every task's deployable was exported as a bundle.
    assert res["latest_model_version"] == 2
    assert not any(t["labels"]["stale"] or t["model"]["stale"] or t["deployable"]["stale"] for t in res["tasks"])
    for task in ("ticket_topic", "billing_kind", "urgency", "sentiment"):
        assert (d / "bundles" / task / "model.onnx").is_file() and (d / "bundles" / task / "manifest.json").is_file()
    assert "student acc." in p.stdout and "student ms/text" in p.stdout
    assert "mother model acc." in p.stdout and "train: model v2 trained" in p.stdout
    # Running it again rebuilds the demo folder; a non-demo folder is refused.
    assert run_proc("demo", "--dir", d, "--epochs", "0.05", "--distill-epochs", "0.5", "--encoder", enc).returncode == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    p = run_proc("demo", "--dir", other)
    assert p.returncode == 2 and (other / "keep.txt").exists()
