import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def pytest_report_header(config):
    from tbx import record

    return f"tbx kernel: {record.IMPLEMENTATION}"
