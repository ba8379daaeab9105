//! The conformance suite on PostgreSQL: each case in a schema of its own. Skipped, with
//! the reason, when PostgreSQL is unreachable — unless `JOBCHAIN_REQUIRE_POSTGRES=1`.

use jobchain_conformance::support::postgres_harness;
use jobchain_conformance::Harness;

async fn postgres() -> Option<Harness> {
    postgres_harness().await
}

jobchain_conformance::conformance_suite!(postgres);
