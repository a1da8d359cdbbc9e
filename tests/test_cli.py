import shutil
import subprocess
import sys

import yaml
from click.testing import CliRunner

from universal_attention import AttentionResNet50, ModelConfig, __version__, save_checkpoint
from universal_attention.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


def test_config_show_prints_resolved_yaml_with_overrides():
    result = run("config", "show", "--preset", "quickstart", "--set", "reptile.inner_steps=8")
    assert result.exit_code == 0
    shown = yaml.safe_load(result.output)
    assert shown["reptile"]["inner_steps"] == 8
    assert shown["name"] == "quickstart"


def test_config_show_bad_key_is_one_red_line_and_exit_2():
    result = run("config", "show", "--set", "reptile.inner_stepz=3")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: unknown key 'reptile.inner_stepz': reptile has algorithm, heads, inner_steps, inner_lr, "
        "inner_optimizer, inner_state, outer_lr, outer_optimizer, outer_beta1, meta_batch_size, anneal, prefetch"
    ]


def test_info_describes_a_checkpoint(tmp_path):
    model = AttentionResNet50(ModelConfig(trunk="resnet10", query_size=32, alignment_size=16), num_classes=4)
    path = save_checkpoint(tmp_path / "c.safetensors", model, step=12)
    result = run("info", str(path))
    assert result.exit_code == 0, result.output
    assert "default (4)" in result.output
    assert "12" in result.output
    assert f"{sum(p.numel() for p in model.parameters()):,}" in result.output


def test_info_on_a_wrong_file_is_one_line(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\x00" * 10)
    result = run("info", str(path))
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "info", str(tmp_path / "missing.safetensors"))
    assert result.exit_code != 2
    assert result.exception is not None


def test_real_subprocess_entry_point(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "universal_attention.cli", "config", "show", "--preset", "paper"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert yaml.safe_load(ok.stdout)["data"]["target"] == "caltech101"
    bad = subprocess.run(
        [sys.executable, "-m", "universal_attention.cli", "info", str(tmp_path / "none.safetensors")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("error: checkpoint")


def test_console_script_is_installed():
    uattn = shutil.which("uattn")
    assert uattn is not None, "the uattn console script is not on PATH; pip install the project"
    result = subprocess.run([uattn, "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert __version__ in result.stdout
