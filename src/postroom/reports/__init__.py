"""Reports: SQL queries against configured data sources, the built-in
schedule reports, and streaming writers for CSV, XLSX, PDF and HTML."""
