"""A document's content never reaches the logs, also at DEBUG: the libraries that read PDFs
(pdfminer logs every token it parses at DEBUG) are held at WARNING by ``configure_logging``,
the code path every service starts with."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.document_samples import text_pdf

READ_AT_DEBUG = textwrap.dedent("""
    import logging, sys
    from switchyard import Settings
    from switchyard._telemetry import configure_logging
    from switchyard.documents import read_text_layer

    configure_logging(Settings.from_env(), "decision")
    layout = read_text_layer(open(sys.argv[1], "rb").read())
    logging.getLogger("switchyard.check").debug("read %d pages", len(layout))
""")


def test_a_pdf_read_at_debug_leaves_no_word_of_it_in_the_logs(tmp_path: Path) -> None:
    pdf = tmp_path / "admission.pdf"
    pdf.write_bytes(text_pdf(("Patient Name: Quillfeather, Anouk",
                              "Admitting Diagnosis: Addisonian crisis")))
    env = {**os.environ, "SWITCHYARD_LOG_LEVEL": "DEBUG", "SWITCHYARD_LOG_FORMAT": "json"}
    proc = subprocess.run([sys.executable, "-c", READ_AT_DEBUG, str(pdf)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "read 1 pages" in proc.stderr   # DEBUG is on: Switchyard's own lines are there
    for planted in ("Quillfeather", "Addisonian"):
        assert planted not in proc.stderr, proc.stderr[:2000]
