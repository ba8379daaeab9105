//! The behaviour suite that every jobchain [`Store`](jobchain::Store) must pass.
//!
//! A backend's test file provides a factory that returns a fresh, isolated store (a temp
//! SQLite file, a PostgreSQL schema of its own) wrapped in a [`Harness`], and expands
//! [`conformance_suite!`] with it: every case becomes a `#[tokio::test]`. A behaviour
//! change edits the cases here, never one backend's tests.
//!
//! Cases go through the public API — the client and the worker runtime — exactly as a
//! user would, so they check the store and the runtime together.

pub mod claims;
pub mod compose;
pub mod flow;
pub mod hostile;
pub mod leases;
pub mod processes;
pub mod properties;
pub mod proxy;
pub mod registry;
pub mod retries;
pub mod seed;
pub mod store;
pub mod support;
pub mod waits;
pub mod workflow_lifecycle;
pub mod workflows;

pub use support::Harness;

/// Expands every conformance case into a test, each calling `$factory().await` for a
/// fresh [`Harness`] (`None` skips the case, e.g. when PostgreSQL is not reachable).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::conformance_suite!(@in seed, $factory;
            seed_full_chain_runs_in_order,
            seed_failing_confirmation_stops_the_chain,
            seed_conditional_chaining_runs_the_rest,
        );
        $crate::conformance_suite!(@in retries, $factory;
            failing_step_retries_with_growing_delays_then_succeeds,
            failing_step_ends_dead_with_every_error,
            permanent_error_is_dead_after_one_attempt,
            panic_is_a_failed_attempt_and_the_worker_survives,
            timeout_is_a_failed_attempt,
            dead_job_retried_from_the_dlq_runs_again,
            failed_attempt_writes_no_follow_ups,
            follow_ups_exactly_once_after_a_retry,
        );
        $crate::conformance_suite!(@in claims, $factory;
            claims_by_priority_then_run_at_then_id,
            concurrent_enqueues_each_get_their_own_jobs,
            delayed_job_never_runs_before_run_at,
            unique_key_returns_the_live_job,
            enqueue_many_is_one_batch,
            malformed_payload_is_a_permanent_error,
            unknown_kind_is_not_claimed,
            queues_and_per_queue_concurrency,
        );
        $crate::conformance_suite!(@in hostile, $factory;
            odd_names_are_kept_and_match_only_themselves,
            unstorable_input_is_refused_and_writes_nothing,
            ten_thousand_steps_are_written_whole,
        );
        $crate::conformance_suite!(@in leases, $factory;
            rescuer_retries_expired_leases,
            graceful_shutdown_releases_running_jobs,
            cancel_running_job_signals_the_handler,
        );
        $crate::conformance_suite!(@in store, $factory;
            late_completion_after_lease_takeover_is_rejected,
            wrong_workflow_hint_still_finishes_the_workflow,
            heartbeat_keeps_a_lease_and_reports_lost_ones,
            claim_takes_only_its_queue_and_kinds_up_to_the_limit,
            builtin_kinds_are_claimed_apart_from_the_backlog,
            claims_continue_in_order_and_see_jobs_written_before_them,
            retry_and_cancel_check_their_preconditions,
            start_workflow_writes_initial_states_and_edges,
            follow_ups_inherit_their_parent_and_workflow,
            purge_dead_deletes_only_old_dead_jobs_outside_workflows,
            settle_and_claim_claims_what_a_claim_would_take,
        );
        $crate::conformance_suite!(@in workflows, $factory;
            declared_order_tolerates_failed_email_on_optional_edges,
            declared_order_cancels_dependents_of_failed_email_on_required_edges,
            fan_out_fan_in_join_runs_once_with_every_output,
            diamond_and_three_level_cascade,
            optional_edges_after_dead_and_cancelled_dependencies,
            invalid_workflows_are_rejected_and_write_nothing,
        );
        $crate::conformance_suite!(@in workflow_lifecycle, $factory;
            cancelling_a_workflow_mid_run,
            dlq_retry_revives_the_cancelled_branch,
            cancelling_a_dead_job_discards_it,
            cleaner_keeps_running_workflows_whole,
            declared_steps_can_chain_dynamically,
            workflow_unique_key_listing_and_counts,
        );
        $crate::conformance_suite!(@in flow, $factory;
            pausing_a_queue_stops_starts_until_resumed,
            snooze_leaves_attempts_unchanged,
            debounce_collapses_enqueues_into_one_run,
            max_running_bounds_a_kind_across_workers,
            rate_limit_bounds_starts_in_every_window,
            concurrency_keys_never_overlap_and_claims_are_fair,
            keys_waiting_for_later_do_not_block_due_keys,
            late_keys_start_at_once_and_unkeyed_jobs_run,
            keyed_jobs_run_where_no_key_limit_is_set,
            periodic_jobs_run_once_per_tick_across_workers,
        );
        $crate::conformance_suite!(@in waits, $factory;
            a_signal_completes_its_waiting_step,
            an_early_signal_is_kept_and_a_later_one_refused,
            racing_signals_have_one_winner,
            signals_racing_the_steps_first_run_are_not_lost,
            an_unanswered_signal_times_out_dead,
            a_timer_survives_a_worker_restart,
            the_result_is_read_through_wait,
            calls_that_make_jobs_due_wake_this_process_at_once,
        );
        $crate::conformance_suite!(@in compose, $factory;
            a_map_runs_each_element_in_order_within_its_parallelism,
            a_failed_element_retried_from_the_dlq_revives_the_map,
            a_sub_workflow_runs_nested_and_returns_its_result,
            a_sub_workflow_is_cancelled_through_its_parent,
            conditions_skip_a_step_or_its_branch,
        );
        $crate::conformance_suite!(@in registry, $factory;
            store_keeps_the_worker_registry,
            handlers_share_application_state,
            waits_that_time_out_are_errors,
        );
        $crate::conformance_suite!(@processes $factory;
            typed_job_from_a_process_without_a_worker_runs_on_its_queue,
            registry_lists_live_workers_and_reports_unhandled_kinds,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn flow_control_holds_across_three_processes() {
            let Some(harness) = $factory().await else { return };
            $crate::flow::flow_control_holds_across_three_processes(
                &harness,
                env!("CARGO_BIN_EXE_jobchain-test-worker"),
            )
            .await;
            harness.close().await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn random_workflows_reach_terminal_states() {
            let Some(harness) = $factory().await else { return };
            $crate::properties::random_workflows_reach_terminal_states(&harness).await;
            harness.close().await;
        }
    };
    (@in $module:ident, $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(harness) = $factory().await else { return };
                $crate::$module::$case(&harness).await;
                harness.close().await;
            }
        )*
    };
    // Cases with worker processes: the expanding test crate must be this crate, whose
    // `jobchain-test-worker` binary they run.
    (@processes $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(harness) = $factory().await else { return };
                $crate::registry::$case(&harness, env!("CARGO_BIN_EXE_jobchain-test-worker")).await;
                harness.close().await;
            }
        )*
    };
}
