"""Renders the report's figures (``core/report``) as HTML, CSV, JSON and PDF files."""
