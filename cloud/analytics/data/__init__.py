"""The analytics' database side (every query comes from cloud/store):
`fetch` reads a period's topology and readings into a Feed, `rows` turns a Report into the
results tables' row arrays without a database, `write` stores one run in one transaction."""
