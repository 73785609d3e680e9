from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_install_and_test_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [ci[i + 1] for i, line in enumerate(ci) if line.startswith("# README:")]
    assert len(commands) == 2
    for command in commands:
        assert f"\n{command}\n" in readme, command
