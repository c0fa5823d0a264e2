//! The parts of GitHub's `workflow_job` webhook payload that metering reads. Unknown fields
//! are ignored (GitHub adds fields); missing ones that matter make the payload malformed.

use projector::runner::FinishedJob;
use serde::Deserialize;

/// Only the action is read first: GitHub's payloads of jobs that are not finished may lack
/// fields metering needs (octokit's real `in_progress` example has no `run_attempt`).
#[derive(Deserialize)]
struct Action {
    action: String,
}

#[derive(Deserialize)]
struct Payload {
    workflow_job: Job,
    repository: Repository,
}

#[derive(Deserialize)]
struct Job {
    id: u64,
    run_attempt: u64,
    #[serde(default)]
    labels: Vec<String>,
    runner_name: Option<String>,
    conclusion: Option<String>,
    started_at: String,
    completed_at: Option<String>,
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    id: u64,
    name: String,
    owner: Owner,
}

#[derive(Deserialize)]
struct Owner {
    login: String,
}

/// A `workflow_job` delivery, as far as metering is concerned.
#[derive(Debug)]
pub(crate) enum WorkflowJob {
    /// A job that finished (`action: completed`).
    Completed(FinishedJob),
    /// Any other action (`queued`, `waiting`, `in_progress`): nothing to meter yet.
    NotCompleted { action: String },
}

/// Reads a `workflow_job` payload; the error says which field is missing or of the wrong type.
pub(crate) fn workflow_job(body: &[u8]) -> Result<WorkflowJob, String> {
    let Action { action } = serde_json::from_slice(body).map_err(|e| format!("not a workflow_job payload: {e}"))?;
    if action != "completed" {
        return Ok(WorkflowJob::NotCompleted { action });
    }
    let payload: Payload =
        serde_json::from_slice(body).map_err(|e| format!("not a completed workflow_job payload: {e}"))?;
    let job = payload.workflow_job;
    let completed_at = job.completed_at.ok_or_else(|| "a completed workflow_job has no completed_at".to_string())?;
    Ok(WorkflowJob::Completed(FinishedJob {
        repository_id: payload.repository.id,
        owner: payload.repository.owner.login,
        project: payload.repository.name,
        job_id: job.id,
        run_attempt: job.run_attempt,
        labels: job.labels,
        runner_name: job.runner_name,
        conclusion: job.conclusion,
        started_at: job.started_at,
        completed_at,
        html_url: job.html_url,
    }))
}
