"""GemmaDesk: run Google's Gemma 4 QAT models locally."""

__version__ = "0.1.0"
APP_NAME = "GemmaDesk"
APP_ID = "dev.gemmadesk.GemmaDesk"
ORG_NAME = "GemmaDesk"
