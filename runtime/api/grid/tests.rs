//! Unit tests of the grid contract.
use super::*;

#[test]
fn a_submission_is_sized_before_its_copies_exist() {
    // 1 MB × 100,000 would be 100 GB: refused from one spec, in no time and no memory.
    let value = "x".repeat(1 << 20);
    let request = SubmitRequest {
        task: Some("echo".into()),
        input: Some(serde_json::json!({ "value": value })),
        count: Some(SUBMIT_COUNT_MAX),
        ..SubmitRequest::default()
    };
    let refusal = request.specs(1_000).expect_err("too large");
    assert!(matches!(refusal, SubmitRefusal::TooLarge { max: SUBMIT_BYTES_MAX, .. }), "{refusal:?}");
    assert!(refusal.to_string().contains("SUBMIT_BYTES_MAX"), "{refusal}");
    assert_eq!(ApiError::from(refusal).code, ErrorCode::TooLarge);
    // Many small tasks still fit: 100,000 noops are about 2 MB.
    let many = SubmitRequest { task: Some("noop".into()), count: Some(SUBMIT_COUNT_MAX), ..SubmitRequest::default() };
    assert_eq!(many.specs(1_000).expect("fits").len(), SUBMIT_COUNT_MAX);
    let specs = vec![TaskSpec::new("echo", vec![0; 1 << 20]); 5];
    assert!(matches!(check_specs(&specs), Err(SubmitRefusal::TooLarge { .. })));
}

#[test]
fn request_bodies_refuse_unknown_fields() {
    type Refuses = fn(&str) -> bool;
    let bodies: [(&str, Refuses); 7] = [
        (r#"{"task":"noop","cont":3}"#, |text| serde_json::from_str::<SubmitRequest>(text).is_err()),
        (r#"{"ids":[1],"timeout_ms":1,"timeout":5}"#, |text| serde_json::from_str::<WaitRequest>(text).is_err()),
        (r#"{"ids":[1],"force":true}"#, |text| serde_json::from_str::<IdsRequest>(text).is_err()),
        (r#"{"node":1,"undo":true}"#, |text| serde_json::from_str::<DrainRequest>(text).is_err()),
        (r#"{"name":"a","task":"noop","every_ms":10,"evry":1}"#, |text| {
            serde_json::from_str::<ScheduleRequest>(text).is_err()
        }),
        (r#"{"name":"a","x":1}"#, |text| serde_json::from_str::<NameRequest>(text).is_err()),
        (r#"{"reports":[],"extra":1}"#, |text| serde_json::from_str::<ReportRequest>(text).is_err()),
    ];
    for (body, refused) in bodies {
        assert!(refused(body), "accepted {body}");
    }
    // The flattened fields a schedule used to take still parse, flat as before.
    let request: ScheduleRequest =
        serde_json::from_str(r#"{"name":"a","task":"echo","input":{"v":1},"priority":2,"every_ms":1000}"#)
            .expect("parses");
    let job = request.job(1_000).expect("a job");
    assert_eq!((job.task.kind.as_str(), job.task.priority), ("echo", 2));
}

#[test]
fn a_cadence_that_never_fires_is_refused() {
    let request = ScheduleRequest {
        name: "never".into(),
        task: Some("noop".into()),
        cron: Some("0 0 30 2 *".into()),
        ..ScheduleRequest::default()
    };
    let error = request.job(1_000).expect_err("Feb 30 never comes");
    assert!(error.contains("never fires"), "{error}");
}

#[test]
fn a_schedule_names_its_zone_for_a_cron_only_and_job_rows_show_zone_and_pause() {
    let request = |cron: Option<&str>, every_ms: Option<u64>, tz: Option<&str>| ScheduleRequest {
        name: "j".into(),
        task: Some("noop".into()),
        cron: cron.map(str::to_owned),
        every_ms,
        tz: tz.map(str::to_owned),
        ..ScheduleRequest::default()
    };
    let zoned = request(Some("0 9 ? * MON-FRI"), None, Some("europe/berlin"));
    assert_eq!(zoned.zone().expect("known").name(), "Europe/Berlin");
    assert!(zoned.job(1_000).is_ok());
    let error = request(Some("0 9 * * *"), None, Some("Mars/Olympus")).job(1_000).expect_err("unknown");
    assert!(error.contains("unknown time zone `Mars/Olympus`") && error.contains("America/New_York"), "{error}");
    let error = request(None, Some(1_000), Some("Europe/Berlin")).job(1_000).expect_err("an interval");
    assert!(error.contains("applies to a cron"), "{error}");
    assert!(request(None, Some(1_000), Some("UTC")).job(1_000).is_ok());
    let parsed: ScheduleRequest =
        serde_json::from_str(r#"{"name":"j","task":"noop","cron":"0 9 * * *","tz":"Asia/Tokyo"}"#).expect("parses");
    assert_eq!(parsed.tz.as_deref(), Some("Asia/Tokyo"));
    // A row from a node of an earlier build has neither field: UTC, not paused.
    let row =
        r#"{"name":"j","task":"noop","cadence":"every 1000 ms","due_ms":5,"runs":0,"skipped":0,"last_task":null}"#;
    let view: JobView = serde_json::from_str(row).expect("parses");
    assert_eq!((view.tz.as_str(), view.paused), ("UTC", false));
}
