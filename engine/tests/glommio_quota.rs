//! The patched glommio (`third_party/README.md`): an executor preempted before it
//! runs any task must still run its runnable tasks instead of parking. Tessera's
//! short task quota (`runtime::TASK_QUOTA`) depends on it. Released glommio 0.9.0
//! parks here and the loop stops making progress.
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn executor_preempted_before_it_runs_a_task_still_runs_it() {
    let (done_tx, done_rx) = mpsc::channel();
    // A thread of its own: a hang is reported as a failure, and the thread is left
    // behind rather than blocking the test binary.
    std::thread::spawn(move || {
        // A quota so short that the preemption timer has always fired by the time
        // the task queues are looked at.
        let ex =
            glommio::LocalExecutorBuilder::default().preempt_timer(Duration::from_nanos(1)).make().expect("executor");
        for _ in 0..1_000 {
            ex.run(async {});
        }
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the executor stopped running runnable work (glommio's park bug, third_party/README.md)");
}
