"""core.rife.RIFE: the native plugin built with the machine's C compiler, in a real core and a fresh vspipe.

Skipped, with the reason, where VapourSynth is not importable, its C headers are missing or there is no
C compiler. The argument mapping is tested without any of them in test_native.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest

from vsrife.native import ARGUMENTS

vs = pytest.importorskip("vapoursynth", reason="VapourSynth is not importable; the plugin's tests need a real core")

from vsrife import native  # noqa: E402 - after the skip

if not native._include_dirs():
    pytest.skip("VapourSynth's C headers (VapourSynth4.h) are not found here", allow_module_level=True)
try:
    native._compiler()
except native.PluginError as e:
    pytest.skip(str(e), allow_module_level=True)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The plugin built for namespace 'rife' and loaded into this process's core."""
    folder = tmp_path_factory.mktemp("plugins")
    path = native.build("rife", folder)
    vs.core.std.LoadPlugin(str(path))
    return path


def clip3():
    core = vs.core
    colours = ([0.1, 0.5, 0.9], [0.8, 0.3, 0.2], [0.4, 0.9, 0.1])
    return core.std.Splice([core.std.BlankClip(format=vs.RGBS, width=64, height=64, length=1, color=c) for c in colours])


def test_the_namespace_is_listed_with_its_signature(loaded):
    plugin = next(p for p in vs.core.plugins() if p.namespace == "rife")
    assert plugin.identifier == "io.github.vsrife.rife"
    rife = next(f for f in plugin.functions() if f.name == "RIFE")
    assert rife.signature == ARGUMENTS


def test_the_same_frames_as_vsrife_rife(loaded, weights_40):
    import numpy as np

    import vsrife

    clip = clip3()
    ours = vs.core.rife.RIFE(clip, release="4.0", factor_num=5, factor_den=2)
    direct = vsrife.RIFE(clip, model="4.0", multi=Fraction(5, 2))
    assert ours.num_frames == direct.num_frames == 8 and ours.fps == direct.fps
    for a, b in zip(ours.frames(), direct.frames(), strict=True):
        assert all(np.array_equal(np.asarray(a[p]), np.asarray(b[p])) for p in range(3))
    ncnn = vs.core.rife.RIFE(clip, model=12)  # RIFE-ncnn-Vulkan's "rife-v4 ensemble": 4.0 with tta
    tta = vsrife.RIFE(clip, model="4.0", tta=True)
    assert np.array_equal(np.asarray(ncnn.get_frame(1)[0]), np.asarray(tta.get_frame(1)[0]))


def test_bad_arguments_raise_vs_error_at_creation(loaded, weights_40):
    clip = clip3()
    for kwargs, message in (({"model": 3}, "not a RIFE 4.x model"), ({"release": "4.0", "scale": 3.0}, "scale must"),
                            ({"release": "4.0", "model": 11}, "not both"), ({"release": "4.25", "tta": 1}, "no tta")):  # fmt: skip
        with pytest.raises(vs.Error, match=rf"^rife\.RIFE: .*{message}"):
            vs.core.rife.RIFE(clip, **kwargs)
    with pytest.raises(vs.Error, match="at least 2 frames"):
        vs.core.rife.RIFE(clip[0], release="4.0")
    with pytest.raises(vs.Error, match="internal to rife.RIFE"):
        vs.core.rife.InternalTake()


def test_many_creations_and_failures_leak_no_clip(loaded, weights_40):
    clip = clip3()
    before = sys.getrefcount(clip)
    for _ in range(200):
        out = vs.core.rife.RIFE(clip, release="4.0")
        assert out.num_frames == 6
        del out
        with pytest.raises(vs.Error):
            vs.core.rife.RIFE(clip, model=1)
    assert sys.getrefcount(clip) == before
    assert vs.core.rife.RIFE(clip, release="4.0").get_frame(5) is not None  # still in working order


def test_list_gpu_answers_with_a_text_clip(loaded, weights_40):
    out = vs.core.rife.RIFE(clip3(), list_gpu=1)
    assert out.num_frames == 3 and out.format.id == vs.RGBS


def vspipe_env(conf: Path, tmp_path: Path) -> dict:
    """vspipe embeds its own interpreter: a sitecustomize shows it this environment as a site folder (with
    its .pth files, so an editable install of vsrife is found as an installed one would be)."""
    site = sysconfig.get_paths()["purelib"]
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "sitecustomize.py").write_text(f"import site\nsite.addsitedir({site!r})\n")
    return {**os.environ, "PYTHONPATH": f"{boot}{os.pathsep}{site}", "VAPOURSYNTH_CONF_PATH": str(conf)}


def test_install_then_any_script_uses_core_rife_in_a_fresh_vspipe(tmp_path, weights_40):
    vspipe = shutil.which("vspipe")
    if vspipe is None:
        pytest.skip("vspipe is not on PATH")
    folder, conf = tmp_path / "plugins", tmp_path / "vapoursynth.conf"
    conf.write_text(f"UserPluginDir={folder}\n")
    env = vspipe_env(conf, tmp_path)
    cli = [sys.executable, "-m", "vsrife"]
    done = subprocess.run([*cli, "plugin", "install"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (folder / "libvsrife_rife.so").is_file()
    body = ("import vapoursynth as vs\ncore = vs.core\n"
            "colours = ([0.1, 0.5, 0.9], [0.8, 0.3, 0.2], [0.4, 0.9, 0.1])\n"
            "clip = core.std.Splice([core.std.BlankClip(format=vs.RGBS, width=64, height=64, length=1, color=c)"
            " for c in colours])\n")  # fmt: skip
    plain = tmp_path / "plain.vpy"  # no import of vsrife, no LoadPlugin
    plain.write_text(body + "core.rife.RIFE(clip, release='4.0', fps_num=60, fps_den=1).set_output()\n")
    direct = tmp_path / "direct.vpy"
    direct.write_text(body + "import vsrife\nvsrife.RIFE(clip, model='4.0', fps_num=60, fps_den=1).set_output()\n")
    outputs = []
    for script in (plain, direct):
        run = subprocess.run([vspipe, str(script), "-"], env=env, capture_output=True, timeout=300)
        assert run.returncode == 0, run.stderr.decode()
        assert b"still exist" not in run.stderr, run.stderr.decode()  # the core counts leaked filters
        outputs.append(run.stdout)
    assert outputs[0] == outputs[1] and len(outputs[0]) == 8 * 64 * 64 * 3 * 4  # 8 RGBS frames
    status = subprocess.run([*cli, "plugin", "status"], env=env, capture_output=True, text=True)
    assert "core.rife.RIFE" in status.stdout
    done = subprocess.run([*cli, "plugin", "remove"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert list(folder.iterdir()) == []  # no trace
    again = subprocess.run([vspipe, str(plain), "-"], env=env, capture_output=True, timeout=300)
    assert again.returncode != 0 and b"rife" in again.stderr


def test_a_namespace_held_by_another_plugin_is_explained(tmp_path):
    """RIFE-ncnn-Vulkan holds 'rife': install says so and offers --namespace; the other namespace works."""
    foreign = tmp_path / "foreign.c"
    foreign.write_text(textwrap.dedent("""
        #include "VapourSynth4.h"
        static void VS_CC create(const VSMap *in, VSMap *out, void *d, VSCore *core, const VSAPI *vsapi) {}
        VS_EXTERNAL_API(void) VapourSynthPluginInit2(VSPlugin *plugin, const VSPLUGINAPI *vspapi) {
            vspapi->configPlugin("com.example.rife", "rife", "stand-in for RIFE-ncnn-Vulkan", 1, VAPOURSYNTH_API_VERSION,
                                 0, plugin);
            vspapi->registerFunction("RIFE", "clip:vnode;", "clip:vnode;", create, NULL, plugin);
        }
    """))
    library = tmp_path / "libforeign.so"
    subprocess.run([native._compiler(), "-shared", "-fPIC", f"-I{native._include_dirs()[0]}", str(foreign), "-o",
                    str(library)], check=True)  # fmt: skip
    code = textwrap.dedent(f"""
        import sys, vapoursynth as vs
        from pathlib import Path
        from vsrife import native
        vs.core.std.LoadPlugin({str(library)!r})
        try:
            native.install("rife", Path({str(tmp_path)!r}))
            sys.exit("installed over another plugin's namespace")
        except native.PluginError as e:
            assert "--namespace" in str(e) and "libforeign.so" in str(e), e
        path = native.install("vsrife", Path({str(tmp_path)!r}))
        vs.core.std.LoadPlugin(str(path))
        clip = vs.core.std.BlankClip(format=vs.RGBS, width=32, height=32, length=2)
        assert vs.core.vsrife.RIFE(clip, release="4.0").num_frames == 4
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_without_a_python_interpreter_the_call_says_so(tmp_path, loaded):
    """A C program hosting the core, with no Python in the process: rife.RIFE fails with a clear message
    (the plugin looks Python up at run time, so it still loads)."""
    host = tmp_path / "host.c"
    host.write_text(textwrap.dedent("""
        #include <stdio.h>
        #include "VapourSynth4.h"
        int main(int argc, char **argv) {
            const VSAPI *vsapi = getVapourSynthAPI(VAPOURSYNTH_API_VERSION);
            VSCore *core = vsapi->createCore(0);
            VSMap *args = vsapi->createMap(), *none = vsapi->createMap();
            vsapi->mapSetData(args, "path", argv[1], -1, dtUtf8, maReplace);
            VSPlugin *std = vsapi->getPluginByNamespace("std", core);
            VSMap *loaded = vsapi->invoke(std, "LoadPlugin", args);
            if (vsapi->mapGetError(loaded)) { printf("load: %s\\n", vsapi->mapGetError(loaded)); return 2; }
            VSMap *blank = vsapi->invoke(std, "BlankClip", none);
            VSMap *call = vsapi->createMap();
            vsapi->mapConsumeNode(call, "clip", vsapi->mapGetNode(blank, "clip", 0, NULL), maReplace);
            VSMap *out = vsapi->invoke(vsapi->getPluginByNamespace("rife", core), "RIFE", call);
            printf("%s\\n", vsapi->mapGetError(out) ? vsapi->mapGetError(out) : "no error");
            vsapi->freeMap(out); vsapi->freeMap(call); vsapi->freeMap(blank); vsapi->freeMap(loaded);
            vsapi->freeMap(none); vsapi->freeMap(args); vsapi->freeCore(core);
            return 0;
        }
    """))
    library = native._core_library()
    if library is None:
        pytest.skip("cannot tell which VapourSynth library this process runs")
    program = tmp_path / "host"
    subprocess.run([native._compiler(), f"-I{native._include_dirs()[0]}", str(host), "-o", str(program),
                    f"-L{library.parent}", f"-Wl,-rpath,{library.parent}", "-lvapoursynth"], check=True)  # fmt: skip
    done = subprocess.run([str(program), str(loaded)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("rife.RIFE: no Python interpreter runs in this process"), done.stdout
