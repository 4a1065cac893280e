"""The integration layer runs on the real PostgreSQL and Redis with a real ``celery worker``.

pytest-django configures one database per session, so the layer is a second pytest session:
``test_layer.py`` (collected by the ordinary run, marker ``integration``) checks that the services
answer, then runs ``tests/integration/postgres/`` (plus the model-constraint tests, again on
PostgreSQL) in a child pytest whose settings point at PostgreSQL and Redis. The child's tests are
ignored by the ordinary session.
"""

import os

collect_ignore = [] if os.environ.get("MASKMILL_INTEGRATION_SESSION") == "1" else ["postgres"]
