//! The table's recurring jobs: scheduling, the leader's fire decisions, pause, resume and trigger.
//!
//! Every due time here is a number that arrived in a command (a zoned schedule's first due time, a
//! fire decision's next one, a resume's) or, for the UTC `Schedule` entries that earlier builds wrote,
//! the zone-free arithmetic of `schedule.rs`, so replicas never read time-zone data and agree because
//! they apply the same numbers.
//!
//! Invariant: a paused job fires nothing: no `Fire` applies to it (a decision made before the pause and
//! committed after it is refused), and it leaves the due list until a `Resume` gives it a due time again.
//! Invariant: a trigger never changes a job's due time, and without overlap it never starts a run while
//! the job's last run has not ended.

use std::collections::BTreeMap;

use super::{GridError, TaskTable, JOBS_MAX, KIND_BYTES_MAX};
use crate::grid::command::{GridEffects, Job, JobExtras, JobSpec};
use crate::grid::schedule::{Zone, ZONE_NAME_BYTES_MAX};
use crate::grid::task::TaskId;

impl TaskTable {
    /// The recurring jobs.
    pub fn jobs(&self) -> &BTreeMap<String, Job> {
        &self.jobs
    }

    /// What `name` has beyond its [`Job`] (its zone, whether it is paused); the default for a job without
    /// an entry or no job.
    pub fn job_extras(&self, name: &str) -> JobExtras {
        self.job_extras.get(name).cloned().unwrap_or_default()
    }

    /// Every job's extras that differ from the default, for the snapshot.
    pub fn all_job_extras(&self) -> &BTreeMap<String, JobExtras> {
        &self.job_extras
    }

    /// Puts back what [`Self::all_job_extras`] gave, after this table was read from a snapshot (nothing,
    /// for formats before 4). Entries for jobs the table does not hold are dropped.
    pub fn restore_job_extras(&mut self, mut extras: BTreeMap<String, JobExtras>) {
        extras.retain(|name, extras| self.jobs.contains_key(name) && !extras.is_default());
        self.job_extras = extras;
    }

    /// Whether `job`'s last run has not ended.
    pub fn job_running(&self, job: &Job) -> bool {
        job.last_task.and_then(|task| self.tasks.get(&task)).is_some_and(|task| !task.state.is_terminal())
    }

    /// Creates or replaces a job, due first at `due_ms`, its cron read in `tz` (`None` or `UTC`: UTC).
    /// A replaced job starts over: not paused, no runs counted.
    pub(super) fn schedule(&mut self, spec: &JobSpec, due_ms: Option<u64>, tz: Option<&str>) -> Result<(), GridError> {
        if spec.name.is_empty() || spec.name.len() > KIND_BYTES_MAX {
            return Err(GridError::Refused(format!("a job name has 1..={KIND_BYTES_MAX} bytes")));
        }
        if !self.jobs.contains_key(&spec.name) && self.jobs.len() >= JOBS_MAX {
            return Err(GridError::Refused(format!("the cluster holds {JOBS_MAX} jobs")));
        }
        let tz = tz.filter(|tz| *tz != Zone::UTC);
        if tz.is_some_and(|tz| tz.is_empty() || tz.len() > ZONE_NAME_BYTES_MAX) {
            return Err(GridError::Refused(format!("a time zone name has 1..={ZONE_NAME_BYTES_MAX} bytes")));
        }
        self.check_spec(&spec.task)?;
        let job = Job { spec: spec.clone(), due_ms, last_task: None, runs: 0, skipped: 0 };
        self.jobs.insert(spec.name.clone(), job);
        let extras = JobExtras { tz: tz.map(str::to_owned), paused: false };
        if extras.is_default() {
            self.job_extras.remove(&spec.name);
        } else {
            self.job_extras.insert(spec.name.clone(), extras);
        }
        Ok(())
    }

    /// Deletes a job (its runs already submitted go on). Returns whether there was one.
    pub(super) fn unschedule(&mut self, name: &str) -> bool {
        self.job_extras.remove(name);
        self.jobs.remove(name).is_some()
    }

    fn is_paused(&self, name: &str) -> bool {
        self.job_extras.get(name).is_some_and(|extras| extras.paused)
    }

    /// Applies the leader's decision on a due job. Returns whether it applied (false: stale, or the job
    /// was paused since).
    pub(super) fn on_fire(
        &mut self,
        name: &str,
        due_ms: u64,
        (fire, skipped, next_due_ms): (bool, u64, Option<u64>),
        now_ms: u64,
        effects: &mut GridEffects,
    ) -> bool {
        let Some(job) = self.jobs.get(name) else { return false };
        if job.due_ms != Some(due_ms) || self.is_paused(name) {
            return false;
        }
        if fire && self.submit_run(name, now_ms, effects).is_err() {
            return false;
        }
        let job = self.jobs.get_mut(name).expect("checked above");
        job.skipped = job.skipped.saturating_add(skipped);
        job.due_ms = next_due_ms;
        true
    }

    /// Submits one run of `name` now and records it as the job's last.
    fn submit_run(&mut self, name: &str, now_ms: u64, effects: &mut GridEffects) -> Result<TaskId, GridError> {
        let spec = self.jobs.get(name).map(|job| job.spec.task.clone()).ok_or_else(|| no_job(name))?;
        let id = TaskId(self.next_id);
        self.submit(id, spec, now_ms)?;
        effects.submitted += 1;
        let job = self.jobs.get_mut(name).expect("checked above");
        job.last_task = Some(id);
        job.runs += 1;
        Ok(id)
    }

    /// Pauses a job. Returns whether it applied (false: no such job, or already paused).
    pub(super) fn on_pause(&mut self, name: &str) -> bool {
        if !self.jobs.contains_key(name) || self.is_paused(name) {
            return false;
        }
        self.job_extras.entry(name.to_owned()).or_default().paused = true;
        true
    }

    /// Resumes a paused job with the proposer's numbers: next due at `due_ms`, `skipped` more fire times
    /// passed over. Returns whether it applied (false: no such job, or not paused).
    pub(super) fn on_resume(&mut self, name: &str, due_ms: Option<u64>, skipped: u64) -> bool {
        if !self.is_paused(name) {
            return false;
        }
        let Some(job) = self.jobs.get_mut(name) else { return false };
        job.due_ms = due_ms;
        job.skipped = job.skipped.saturating_add(skipped);
        if let Some(extras) = self.job_extras.get_mut(name) {
            extras.paused = false;
            if extras.is_default() {
                self.job_extras.remove(name);
            }
        }
        true
    }

    /// Submits one run of a job now, paused or not, its due time untouched. Returns whether it applied
    /// (false: no such job, or its last run is still going and it does not allow overlap).
    ///
    /// # Errors
    /// The submission's refusal (a full table, an exhausted budget): nothing is changed then.
    pub(super) fn on_trigger(&mut self, name: &str, now_ms: u64, effects: &mut GridEffects) -> Result<bool, GridError> {
        let Some(job) = self.jobs.get(name) else { return Ok(false) };
        if self.job_running(job) && !job.spec.overlap {
            return Ok(false);
        }
        self.submit_run(name, now_ms, effects)?;
        Ok(true)
    }

    /// Jobs due at `now_ms` and not paused, with whether their last run is still going.
    pub fn due_jobs(&self, now_ms: u64) -> Vec<(&Job, bool)> {
        self.jobs
            .values()
            .filter(|job| job.due_ms.is_some_and(|due| due <= now_ms) && !self.is_paused(&job.spec.name))
            .map(|job| (job, self.job_running(job)))
            .collect()
    }
}

fn no_job(name: &str) -> GridError {
    GridError::Refused(format!("no job named {name}"))
}
