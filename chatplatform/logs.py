"""One JSON object a line, with user_id, run_id and connection_id where they apply."""

import json
import logging
from datetime import UTC, datetime

CONTEXT_FIELDS = ("user_id", "run_id", "connection_id", "seq", "process")


class JsonFormatter(logging.Formatter):
    """Formats a record as a JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one JSON line."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
