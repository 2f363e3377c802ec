# Trac 1.6 single-file plugin: return no PostgreSQL connection to Trac's per-process pool, so
# each one is closed as soon as the request using it is done with it (the `poolable = False`
# workaround). Copy it into a site's `plugins/` directory (or a shared directory named by
# `[inherit] plugins_dir`); it takes effect when the site's workers next start
# (`paddock tenants restart NAME`). Costs a connection set-up (TCP, authentication) per
# request that touches the database. See docs/operations.md, "Databases".
from trac.db.postgres_backend import PostgreSQLConnection

PostgreSQLConnection.poolable = False
