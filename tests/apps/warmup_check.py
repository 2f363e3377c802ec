"""Checks of the zygote's Trac warm-up (worker/src/python/warmup_trac.py), run by
tests/tests/zygote.rs with the test virtualenv's Python. Prints one `name=value` line per
check; the Rust test asserts on them."""
import os
import runpy
import sys
import tempfile

module = runpy.run_path(sys.argv[1])


def open_files(part):
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if part in target:
            out.append(target)
    return out


# Paused in the middle (after the environment was made and a page served): nothing of the
# warm-up's environment stays open for a fork to inherit.
w = module["Warmup"]()
for _ in range(3):
    w.step()
print(f"open_mid={len(open_files('paddock-zygote-warmup'))}")
w.pause()
print(f"open_paused={len(open_files('paddock-zygote-warmup'))}")
while w.step():
    pass
tmp = w.tmp
print(f"summary={w.finish()}")
print(f"dir_left={os.path.exists(tmp)}")

# The cache: only files under its root, keyed by the settings, checked against the source.
import jinja2  # noqa: E402

root = tempfile.mkdtemp()
other = tempfile.mkdtemp()
cache = module["template_cache_class"]()(root)
for d, text in ((root, "root ${x}"), (other, "other ${x}")):
    with open(os.path.join(d, "t.html"), "w") as f:
        f.write(text)


def render(d, **settings):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(d), bytecode_cache=cache,
                             variable_start_string="${", variable_end_string="}", **settings)
    return env.get_template("t.html").render(x=1)


print(f"first={render(root)}")
print(f"cached={len(cache.store)}")
print(f"outside={render(other)} cached={len(cache.store)}")
with open(os.path.join(root, "t.html"), "w") as f:
    f.write("changed ${x}")
print(f"changed={render(root)}")
print(f"other_settings={render(root, trim_blocks=True)} cached={len(cache.store)}")
