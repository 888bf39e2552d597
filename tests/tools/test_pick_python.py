"""tools/pick-python, which the Makefile makes the venvs with: an interpreter given is checked, and
otherwise the fastest usable one found is chosen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "pick-python"


def pick(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(["sh", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def fake_python(directory: Path, name: str, *, version_ok: bool, loop_us: int) -> Path:
    """A stand-in interpreter: answers pick-python's two questions (if usable, where is it? how fast is it?)."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / name
    script.write_text(
        "#!/bin/sh\n"
        'case "$2" in\n'
        f"  *ensurepip*) {f'echo {script}' if version_ok else 'true'} ;;\n"
        f"  *process_time*) echo {loop_us} ;;\n"
        "  *) exit 1 ;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    return script


def test_an_interpreter_given_is_the_one_chosen() -> None:
    answer = pick(sys.executable)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == sys.executable


def old_python(directory: Path) -> Path:
    """This interpreter, saying it is 3.10: it runs pick-python's own check, which must refuse it."""
    script = directory / "python3.10"
    script.write_text(
        "#!/bin/sh\n"
        f'exec {sys.executable} -c \'import sys; sys.version_info = (3, 10, 13, "final", 0); '
        'exec(sys.argv[1])\' "$2"\n'
    )
    script.chmod(0o755)
    return script


def test_an_interpreter_given_that_is_too_old_or_not_python_is_refused(tmp_path: Path) -> None:
    old = old_python(tmp_path)
    for given in (str(old), "/bin/true", str(tmp_path / "missing")):
        answer = pick(given)
        assert answer.returncode == 1, given
        assert "is not a Python 3.11+ that can make a venv" in answer.stderr
        assert answer.stdout == ""


def test_the_fastest_usable_interpreter_found_is_chosen(tmp_path: Path) -> None:
    # python3 on PATH is found beside the system's /usr/bin/python3 (if there is one): a faster
    # stand-in wins, a slower one loses to any real interpreter, and one too old is never chosen.
    fast = fake_python(tmp_path / "fast", "python3", version_ok=True, loop_us=1)
    answer = pick(path=f"{fast.parent}:/usr/bin:/bin")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == str(fast)

    real = Path(sys.executable).resolve()
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    (real_dir / "python3.11").symlink_to(real)
    slow = fake_python(tmp_path / "slow", "python3", version_ok=True, loop_us=10**9)
    answer = pick(path=f"{slow.parent}:{real_dir}:/usr/bin:/bin")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() != str(slow)

    old = fake_python(tmp_path / "old", "python3", version_ok=False, loop_us=1)
    answer = pick(path=f"{old.parent}:{real_dir}:/usr/bin:/bin")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() != str(old)
