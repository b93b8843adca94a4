"""PostgreSQL's binary COPY format, both ways, as NumPy columns: `encode` turns columns into
the stream `COPY ... FROM STDIN (FORMAT binary)` reads (the historical import, the analytics
results), `decode` turns the stream `COPY (SELECT ...) TO STDOUT (FORMAT binary)` writes into
structured arrays (the analytics' data access). Pure code: the callers own the connections."""
