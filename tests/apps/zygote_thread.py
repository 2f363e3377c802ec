"""Preloaded by tests/tests/zygote.rs: starts a thread when imported, so a zygote that
preloads it is no longer single-threaded and must refuse to fork."""
import threading
import time

threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
