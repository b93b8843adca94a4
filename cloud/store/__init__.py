"""TimescaleDB schema as versioned migrations, the topology archive and the queries over them."""
