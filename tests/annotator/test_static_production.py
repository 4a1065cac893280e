"""With DEBUG off (gunicorn in docker) the annotation page's JavaScript must still be served:
collectstatic, then requests for the page's modules (the entry module and every module it
imports, relative to it) and the review page's script answer 200 through WhiteNoise."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import django
django.setup()
from django.core.management import call_command
call_command("collectstatic", interactive=False, verbosity=0)
from django.test import Client
client = Client(SERVER_NAME="localhost")
import re
def get(path):
    response = client.get(path, secure=True)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body
imported = re.findall(r'from "\\./([a-z_]+\\.js)"', get("/static/maskmill/js/app.js")[1].decode())
for name in ("review.js", *sorted(set(imported))):
    response, body = get(f"/static/maskmill/js/{name}")
    print("module", name, response.status_code, response["Content-Type"], sep="|")
response, body = get("/static/maskmill/js/app.js")
print(response.status_code, response["Content-Type"], len(body), sep="|")
"""


def test_static_files_are_served_with_debug_off(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "annotator.settings",
        "DEBUG": "0",
        "SECRET_KEY": "x" * 60,
        "ALLOWED_HOSTS": "localhost",
        "STATIC_ROOT": str(tmp_path / "static"),
        "MASKMILL_VAR_DIR": str(tmp_path / "var"),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    status, content_type, size = lines[-1].split("|")
    assert status == "200" and "javascript" in content_type and int(size) > 1000
    modules = [line.split("|")[1:] for line in lines if line.startswith("module|")]
    assert len(modules) > 10, modules
    for name, module_status, module_type in modules:
        assert module_status == "200" and "javascript" in module_type, name
