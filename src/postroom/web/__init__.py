"""Server-rendered pages for operators' browsers."""
