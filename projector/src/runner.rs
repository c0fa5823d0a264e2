//! The GitHub runner layer (SPEC.md section 13), the one implementation of its rules: which
//! resource a job's `runs-on` labels name ([`label_base`], [`State::resource_for_labels`]),
//! whether a queued job may run (the job gate, [`State::gate`]), and what a finished job puts
//! in the log ([`State::meter`]).
//!
//! Like the views, everything here is a pure function of the [`State`] and the facts GitHub
//! (or the runner provider, from GitHub) sent; the API parses and authenticates those facts,
//! this module decides. Every decision fails closed: a fact that is missing or malformed
//! denies, or is ignored, never admits.

use std::collections::BTreeSet;

use ledger::statement::{format_rfc3339_ms, parse_rfc3339_ms, Statement};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::data::{is_valid_commit_sha, is_valid_project_name};
use crate::limits::{JOB_LABELS_MAX, LABEL_BYTES_MAX, TEXT_BYTES_MAX};
use crate::state::{vouch_key, State, AUTOMATION_ACTOR};
use crate::{AccessAnswer, AccessQuery, GrantView};

/// Milliseconds in a minute and in a second: the units webhook metering rounds up to.
const MINUTE_MS: i64 = 60_000;
const SECOND_MS: i64 = 1_000;

/// The part of a `runs-on` label that can name a resource, or `None` when the label is
/// malformed: longer than [`LABEL_BYTES_MAX`] bytes, or holding whitespace or control
/// characters. Otherwise the label is lowercased (GitHub compares labels without case) and
/// cut at the first `--` (Cirun's per-job suffix: `cirun-openstack-gpu-large--123-linux_64`)
/// and at the first `;` (Namespace's options: `…-linux-64;container.privileged=true`).
///
/// Only ASCII letters are lowercased: resource names are ASCII, so a label with other letters
/// names no resource however they fold (a look-alike `K`, U+212A, stays itself).
pub fn label_base(label: &str) -> Option<String> {
    if label.len() > LABEL_BYTES_MAX || label.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let lower = label.to_ascii_lowercase();
    let cut = [lower.find("--"), lower.find(';')].into_iter().flatten().min().unwrap_or(lower.len());
    Some(lower[..cut].to_string())
}

/// Which resource a job's labels name ([`State::resource_for_labels`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelMatch {
    /// Exactly one resource (defined, possibly retired): its name.
    Resource(String),
    /// No label names a resource (`ubuntu-latest` alone): not a gated job.
    NoResource,
    /// Labels name two or more resources (their names, sorted): refused, it is ambiguous
    /// which one the job would run on and be billed to.
    SeveralResources(Vec<String>),
    /// A label is malformed, or there are more than [`JOB_LABELS_MAX`]: what is wrong, for
    /// people.
    Malformed(String),
}

impl LabelMatch {
    /// The denial reason: `no_resource`, `several_resources` or `malformed_label`; `None` for
    /// [`LabelMatch::Resource`].
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            LabelMatch::Resource(_) => None,
            LabelMatch::NoResource => Some("no_resource"),
            LabelMatch::SeveralResources(_) => Some("several_resources"),
            LabelMatch::Malformed(_) => Some("malformed_label"),
        }
    }
}

/// A GitHub account as a job's facts name it (`actor`, `triggering_actor`). Unknown fields
/// are ignored: providers pass on what GitHub gives them.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
pub struct GitHubUser {
    /// The login (case-insensitive, may be renamed).
    pub login: String,
    /// The numeric account id (stable across renames).
    pub id: u64,
    /// GitHub's account type: `User`, `Bot`, `Organization`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

impl GitHubUser {
    /// A bot account: type `Bot`, or a login ending in `[bot]` (either one is enough, so a
    /// provider that drops the type does not turn a bot into a user).
    pub fn is_bot(&self) -> bool {
        self.kind.as_deref().is_some_and(|k| k.eq_ignore_ascii_case("bot"))
            || self.login.to_ascii_lowercase().ends_with("[bot]")
    }
}

/// The facts of a queued job, as the runner provider has them from GitHub (the job's labels,
/// and the workflow run's event, head repository, head commit and actors). Unknown fields
/// are ignored.
#[derive(Deserialize, Serialize, Debug, Clone)]
pub struct JobFacts {
    /// `OWNER/NAME` of the repository the job runs in.
    pub repository: String,
    /// The job's `runs-on` labels.
    pub labels: Vec<String>,
    /// The workflow run's event (`push`, `pull_request`, ...).
    pub event: String,
    /// `OWNER/NAME` of the pull request's head repository (for `pull_request`).
    #[serde(default)]
    pub head_repository: Option<String>,
    /// The commit the job runs: 40 hex digits.
    pub head_sha: String,
    /// Who triggered the run first (re-runs keep their privileges).
    pub actor: GitHubUser,
    /// Who started this attempt, if someone else did (a re-run).
    #[serde(default)]
    pub triggering_actor: Option<GitHubUser>,
}

/// The job gate's answer (`POST /v1/access/job`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GateAnswer {
    /// Whether the job may run.
    pub allowed: bool,
    /// `ok`, or the first failing step's reason ([`State::gate`]).
    pub reason: String,
    /// The resource the labels name, once they name one.
    pub resource: Option<String>,
    /// The grant that admits (when allowed), or the one the access check's denial is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantView>,
    /// When allowed: the grant's GitHub repository roles (the default `admin`, `maintain`,
    /// `write` when it names none), for the provider to enforce; grantline cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// A completed `workflow_job` from GitHub's webhook, as [`State::meter`] needs it.
#[derive(Debug, Clone)]
pub struct FinishedJob {
    /// `repository.id`: part of the usage id (stable across renames).
    pub repository_id: u64,
    /// `repository.owner.login`.
    pub owner: String,
    /// `repository.name`: the project.
    pub project: String,
    /// `workflow_job.id`.
    pub job_id: u64,
    /// `workflow_job.run_attempt`: a re-run is another job to meter.
    pub run_attempt: u64,
    /// `workflow_job.labels` (the `runs-on` values).
    pub labels: Vec<String>,
    /// `workflow_job.runner_name`: none for a job that never got a runner.
    pub runner_name: Option<String>,
    /// `workflow_job.conclusion` (`success`, `failure`, `skipped`, `cancelled`, ...).
    pub conclusion: Option<String>,
    /// `workflow_job.started_at` (RFC 3339).
    pub started_at: String,
    /// `workflow_job.completed_at` (RFC 3339).
    pub completed_at: String,
    /// `workflow_job.html_url`.
    pub html_url: Option<String>,
}

/// What a finished job puts in the log ([`State::meter`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Metering {
    /// Nothing, and why: `foreign_repository` (owner is not the organisation), `no_runner`
    /// (no `runner_name`), `no_conclusion`, `skipped`, `no_resource`, `several_resources`,
    /// `malformed_label`, `invalid_project_name` (the repository name is not a project name,
    /// so it can hold no grant and no record can name it), `malformed_time` (unparsable
    /// times, or completed before started), `unit_not_metered` (the job ran under a grant
    /// on a resource whose unit is neither `runner-minutes` nor `runner-seconds`),
    /// `report_too_late` (the job ran under a grant that ended more than
    /// [`USAGE_LATE_DAYS_MAX`](crate::limits::USAGE_LATE_DAYS_MAX) days ago, which takes no
    /// more reports; nor was it cross-access).
    Ignored(&'static str),
    /// The statement for the automation key to sign and append: `usage.reported` or
    /// `usage.unauthorized`. Its `id` is its `usage` and everything in it comes from the job
    /// (`issued_at` is the job's completion), so the same job gives the same bytes: a
    /// redelivery is answered by the log's id idempotency.
    Statement(Statement),
    /// The job is already logged as `usage.unauthorized` at this seq. Said instead of a
    /// statement because that record's `reason` describes the state of its day, which a
    /// later statement might word otherwise (a conflict, not a repeat, for the log).
    AlreadyRecorded {
        /// The `usage.unauthorized` record.
        seq: u64,
    },
}

/// Whether a label's [`label_base`] names `resource`: equal without ASCII case (GitHub
/// routes a job to a runner whatever the case of its label).
pub fn names_resource(base: &str, resource: &str) -> bool {
    base.eq_ignore_ascii_case(resource)
}

impl State {
    /// Which resource `labels` name: each label's [`label_base`] names a resource when it
    /// equals a defined resource's name (retired ones included: the access check then says
    /// `resource_retired`) compared, like labels, without ASCII case. Exactly one distinct
    /// resource is [`LabelMatch::Resource`]; two or more [`LabelMatch::SeveralResources`];
    /// none [`LabelMatch::NoResource`]. One malformed label makes the whole job
    /// [`LabelMatch::Malformed`], whatever the others name: a label we cannot read might be
    /// one GitHub routes to a gated runner, so it fails closed. So do more than
    /// [`JOB_LABELS_MAX`] labels.
    pub fn resource_for_labels(&self, labels: &[String]) -> LabelMatch {
        if labels.len() > JOB_LABELS_MAX {
            return LabelMatch::Malformed(format!("{} labels, more than {JOB_LABELS_MAX}", labels.len()));
        }
        let mut named = BTreeSet::new();
        for label in labels {
            let Some(base) = label_base(label) else {
                return LabelMatch::Malformed(describe_malformed(label));
            };
            if base.is_empty() {
                continue;
            }
            named.extend(self.resources.keys().filter(|r| names_resource(&base, r)).cloned());
        }
        let mut named: Vec<String> = named.into_iter().collect();
        match named.len() {
            0 => LabelMatch::NoResource,
            1 => LabelMatch::Resource(named.remove(0)),
            _ => LabelMatch::SeveralResources(named),
        }
    }

    /// The job gate (SPEC.md section 13): may this queued job run on the resource its labels
    /// name, at `now_ms`? `org` is the organisation whose repositories are the projects. The
    /// steps, in order; the first that fails gives the reason:
    ///
    /// 1. `foreign_repository`: `repository` is not `ORG/NAME` (exactly one `/`, the owner
    ///    equal to `org` without ASCII case, a non-empty name). The labels must name exactly
    ///    one resource: `no_resource`, `several_resources`, `malformed_label`
    ///    ([`State::resource_for_labels`]).
    /// 2. The event: `push` and `workflow_dispatch` run; `pull_request` runs only from the
    ///    same repository (`head_repository` equal to `repository` without ASCII case),
    ///    else `fork_pull_request` (a missing `head_repository` counts as a fork); any other
    ///    event (`pull_request_target`, `workflow_run`, `issue_comment`, `schedule`,
    ///    `repository_dispatch`, ...) is `event_not_allowed`.
    /// 3. `malformed_job`: `head_sha` is not 40 hex digits (compared lowercased).
    /// 4. The access check of section 4 ([`State::access_check`]) for (NAME, resource,
    ///    `pull_request` = the event is `pull_request`), for `actor` and then for
    ///    `triggering_actor`, each with their login and numeric id: its denial reasons
    ///    (`invalid_project_name`, `no_request`, `grant_revoked`, `terms_not_accepted`,
    ///    `github_id_mismatch`, ...) flow through. A bot ([`GitHubUser::is_bot`]) is not
    ///    checked itself: when the project holds no grant that would admit some user, the
    ///    project's reason stands; otherwise the bot passes only through a `job.vouched` for
    ///    (NAME, `head_sha`) whose user, with their GitHub id, passes the access check in its
    ///    place, else `bot_not_vouched` (a vouch for another commit or project does not
    ///    count).
    ///
    /// When allowed, `grant` is the grant that admits `actor` and `roles` its GitHub roles.
    pub fn gate(&self, org: &str, job: &JobFacts, now_ms: i64) -> GateAnswer {
        let deny = |reason: &str, resource: Option<&str>, grant: Option<GrantView>| GateAnswer {
            allowed: false,
            reason: reason.to_string(),
            resource: resource.map(str::to_string),
            grant,
            roles: None,
        };
        let Some(project) = project_in_org(org, &job.repository) else {
            return deny("foreign_repository", None, None);
        };
        let resource = match self.resource_for_labels(&job.labels) {
            LabelMatch::Resource(r) => r,
            other => return deny(other.reason().unwrap_or("no_resource"), None, None),
        };
        let pull_request = match job.event.as_str() {
            "push" | "workflow_dispatch" => false,
            "pull_request" => {
                let same = job.head_repository.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(&job.repository));
                if !same {
                    return deny("fork_pull_request", Some(&resource), None);
                }
                true
            }
            _ => return deny("event_not_allowed", Some(&resource), None),
        };
        let head_sha = job.head_sha.to_ascii_lowercase();
        if !is_valid_commit_sha(&head_sha) {
            return deny("malformed_job", Some(&resource), None);
        }
        let ask = Ask { project, resource: &resource, pull_request, head_sha: &head_sha, now_ms };
        let first = self.admit(&ask, &job.actor);
        if !first.allowed {
            return deny(&first.reason, Some(&resource), first.grant);
        }
        // Usually the same account: the answer would be the same.
        if let Some(triggering) = job.triggering_actor.as_ref().filter(|t| **t != job.actor) {
            let again = self.admit(&ask, triggering);
            if !again.allowed {
                return deny(&again.reason, Some(&resource), again.grant);
            }
        }
        let Some(admitting) = first.grant else {
            return deny("no_request", Some(&resource), None);
        };
        GateAnswer {
            allowed: true,
            reason: "ok".to_string(),
            resource: Some(resource),
            roles: Some(admitting.roles.clone()),
            grant: Some(admitting),
        }
    }

    /// The access check of section 4 for `user` triggering the job, a bot through a vouch
    /// ([`State::gate`], step 4). Allowed answers name the admitting grant.
    fn admit(&self, ask: &Ask<'_>, user: &GitHubUser) -> AccessAnswer {
        let query = |login: Option<&str>, github_id: Option<u64>| AccessQuery {
            project: ask.project.to_string(),
            resource: ask.resource.to_string(),
            pull_request: ask.pull_request,
            user: login.map(str::to_string),
            github_id,
        };
        if !user.is_bot() {
            return self.access_check(&query(Some(&user.login), Some(user.id)), ask.now_ms);
        }
        // Without a user, a grant that names its users says `user_required`: the project
        // holds a grant some user could pass, so the vouch decides.
        let project = self.access_check(&query(None, None), ask.now_ms);
        if !project.allowed && project.reason != "user_required" {
            return project;
        }
        let vouches = self.vouches.get(&vouch_key(ask.project, ask.head_sha));
        for v in vouches.iter().flat_map(|v| v.iter()) {
            let vouched = self.access_check(&query(Some(&v.user), Some(v.github_id)), ask.now_ms);
            if vouched.allowed {
                return vouched;
            }
        }
        AccessAnswer { allowed: false, reason: "bot_not_vouched".to_string(), grant: project.grant }
    }

    /// What a completed job from GitHub's `workflow_job` webhook puts in the log (SPEC.md
    /// section 13), for the automation key to sign.
    ///
    /// Ignored ([`Metering::Ignored`] says why): a repository outside `org`, a job without a
    /// runner, skipped or without a conclusion, labels that name no resource, several or a
    /// malformed one, a repository name that is no project name, unreadable times.
    ///
    /// Otherwise the usage id is `gh:<repository_id>:<job_id>:<run_attempt>` and:
    /// - when the project held a grant on the resource that was active when the job started
    ///   (even if it ended since, up to [`USAGE_LATE_DAYS_MAX`](crate::limits::USAGE_LATE_DAYS_MAX)
    ///   days ago: the job ran under it), `usage.reported`, with `amount` in
    ///   the resource's unit, rounded up: whole minutes for `runner-minutes`, whole seconds
    ///   for `runner-seconds`, at least 1; other units are not metered from webhooks
    ///   (`unit_not_metered`). `check` bills the same grant.
    /// - otherwise `usage.unauthorized` (whatever the unit: cross-access is about access),
    ///   with `reason` = the access check's denial for the project at the job's start, with
    ///   no user: metering asks whether the project held a grant, not who triggered the job
    ///   (that was the gate's question). When the project holds a grant now that began after
    ///   the job started, the reason is `usage_outside_grant`.
    ///
    /// A job already recorded as unauthorized is [`Metering::AlreadyRecorded`].
    pub fn meter(&self, org: &str, job: &FinishedJob) -> Metering {
        if org.is_empty() || !job.owner.eq_ignore_ascii_case(org) {
            return Metering::Ignored("foreign_repository");
        }
        if job.runner_name.as_deref().map_or(true, |n| n.trim().is_empty()) {
            return Metering::Ignored("no_runner");
        }
        match job.conclusion.as_deref() {
            None => return Metering::Ignored("no_conclusion"),
            Some("skipped") => return Metering::Ignored("skipped"),
            Some(_) => {}
        }
        let resource = match self.resource_for_labels(&job.labels) {
            LabelMatch::Resource(r) => r,
            other => return Metering::Ignored(other.reason().unwrap_or("no_resource")),
        };
        if !is_valid_project_name(&job.project) {
            return Metering::Ignored("invalid_project_name");
        }
        let (Some(started_ms), Some(ended_ms)) =
            (parse_rfc3339_ms(&job.started_at), parse_rfc3339_ms(&job.completed_at))
        else {
            return Metering::Ignored("malformed_time");
        };
        let (started_at, ended_at) = (format_rfc3339_ms(started_ms), format_rfc3339_ms(ended_ms));
        if ended_ms < started_ms || started_at.is_empty() || ended_at.is_empty() {
            return Metering::Ignored("malformed_time");
        }
        let usage = format!("gh:{}:{}:{}", job.repository_id, job.job_id, job.run_attempt);
        if let Some(seq) = self.unauthorized_usage.get(&usage) {
            return Metering::AlreadyRecorded { seq: *seq };
        }
        let mut data = Map::new();
        data.insert("usage".into(), Value::from(usage.as_str()));
        data.insert("project".into(), Value::from(job.project.as_str()));
        data.insert("resource".into(), Value::from(resource.as_str()));
        let mut under = self.grants_for(&job.project, &resource).filter(|g| g.covers_start(started_ms)).peekable();
        let granted = under.peek().is_some();
        if granted && under.all(|g| g.usage_closed) {
            return Metering::Ignored("report_too_late");
        }
        let kind = if granted {
            let unit = self.resources.get(&resource).map_or("", |r| r.unit.as_str());
            let duration_ms = ended_ms.saturating_sub(started_ms);
            let amount = match unit {
                "runner-minutes" => rounded_up(duration_ms, MINUTE_MS),
                "runner-seconds" => rounded_up(duration_ms, SECOND_MS),
                _ => return Metering::Ignored("unit_not_metered"),
            };
            data.insert("amount".into(), Value::from(amount));
            "usage.reported"
        } else {
            data.insert("reason".into(), Value::from(self.denial_at_start(&job.project, &resource, started_ms)));
            "usage.unauthorized"
        };
        data.insert("started_at".into(), Value::from(started_at));
        data.insert("ended_at".into(), Value::from(ended_at.as_str()));
        // A link longer than the log takes is left out rather than losing the record.
        if let Some(url) = job.html_url.as_deref().filter(|u| u.len() <= TEXT_BYTES_MAX) {
            data.insert("run_url".into(), Value::from(url));
        }
        Metering::Statement(Statement {
            ledger: self.origin().unwrap_or_default().to_string(),
            id: usage,
            actor: AUTOMATION_ACTOR.to_string(),
            issued_at: ended_at,
            kind: kind.to_string(),
            data: Value::Object(data),
        })
    }

    /// The access check's denial for a job of (project, resource) that started at
    /// `started_at_ms` and ran under no grant. The check reads today's state at that time, so
    /// a grant issued since the start would admit: then the job ran before it began.
    fn denial_at_start(&self, project: &str, resource: &str, started_at_ms: i64) -> String {
        let query = AccessQuery {
            project: project.to_string(),
            resource: resource.to_string(),
            pull_request: false,
            user: None,
            github_id: None,
        };
        let answer = self.access_check(&query, started_at_ms);
        if answer.allowed || answer.reason == "user_required" {
            "usage_outside_grant".to_string()
        } else {
            answer.reason
        }
    }
}

/// What the access check of one job is about.
struct Ask<'a> {
    project: &'a str,
    resource: &'a str,
    pull_request: bool,
    head_sha: &'a str,
    now_ms: i64,
}

/// `NAME` when `repository` is `ORG/NAME` (the owner compared without ASCII case).
fn project_in_org<'a>(org: &str, repository: &'a str) -> Option<&'a str> {
    let (owner, name) = repository.split_once('/')?;
    if org.is_empty() || name.is_empty() || name.contains('/') || !owner.eq_ignore_ascii_case(org) {
        return None;
    }
    Some(name)
}

/// `duration_ms` in whole `unit_ms`, rounded up, at least 1.
fn rounded_up(duration_ms: i64, unit_ms: i64) -> u64 {
    let units = duration_ms.max(0).saturating_add(unit_ms - 1) / unit_ms;
    u64::try_from(units).unwrap_or(0).max(1)
}

/// Why a label is malformed, quoting at most [`LABEL_BYTES_MAX`] bytes of it.
fn describe_malformed(label: &str) -> String {
    if label.len() > LABEL_BYTES_MAX {
        let mut end = LABEL_BYTES_MAX;
        while !label.is_char_boundary(end) {
            end -= 1;
        }
        return format!("label {:?}… is {} bytes, more than {LABEL_BYTES_MAX}", &label[..end], label.len());
    }
    format!("label {label:?} holds whitespace or control characters")
}
