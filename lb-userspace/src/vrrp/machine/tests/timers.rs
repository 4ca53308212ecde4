//! Skew_Time, Master_Down_Interval and the parameters a machine refuses.

use super::*;

#[test]
fn skew_and_master_down_interval_exact_values() {
    // (priority, interval, Skew_Time, Master_Down_Interval), in nanoseconds, truncated.
    let cases = [
        (100, SECOND, ns(609_375_000), ns(3_609_375_000)),
        (150, ms(100), ns(41_406_250), ns(341_406_250)),
        (200, SECOND, ns(218_750_000), ns(3_218_750_000)),
        (255, SECOND, ns(3_906_250), ns(3_003_906_250)),
        (254, ms(10), ns(78_125), ns(30_078_125)),
        // 255 × 40.95 s / 256 = 40.7900390625 s: the half nanosecond goes.
        (1, ms(40_950), ns(40_790_039_062), ns(163_640_039_062)),
    ];
    for (priority, interval, skew, down) in cases {
        assert_eq!(
            skew_time(priority, interval),
            skew,
            "Skew_Time at priority {priority}, interval {interval:?}"
        );
        assert_eq!(
            master_down_interval(priority, interval),
            down,
            "Master_Down_Interval at priority {priority}, interval {interval:?}"
        );
    }
}

#[test]
fn skew_falls_strictly_as_priority_rises_even_at_10ms() {
    // In centiseconds every skew at 10 ms would be 0 and backups would tie.
    for priority in 1..OWNER_PRIORITY {
        let lower = skew_time(priority, INTERVAL_UNIT);
        let higher = skew_time(priority + 1, INTERVAL_UNIT);
        assert!(
            higher < lower,
            "skew at priority {} ({higher:?}) is not below priority {priority}'s ({lower:?})",
            priority + 1
        );
    }
}

// --- Params ---

#[test]
fn params_validation_names_the_problem() {
    let good = params(100, SECOND);
    assert_eq!(good.validate(), Ok(()));
    for interval in [INTERVAL_UNIT, MAX_INTERVAL] {
        let edge = Params {
            advert_interval: interval,
            ..good.clone()
        };
        assert_eq!(edge.validate(), Ok(()), "{interval:?} is in range");
    }
    let cases = [
        (
            Params {
                vrid: 0,
                ..good.clone()
            },
            ParamsError::Vrid,
        ),
        (params(0, SECOND), ParamsError::Priority),
        (params(100, ms(15)), ParamsError::AdvertInterval(ms(15))),
        (params(100, ms(5)), ParamsError::AdvertInterval(ms(5))),
        (
            params(100, ms(40_960)),
            ParamsError::AdvertInterval(ms(40_960)),
        ),
        (
            params(100, Duration::ZERO),
            ParamsError::AdvertInterval(Duration::ZERO),
        ),
    ];
    for (bad, expected) in cases {
        assert_eq!(bad.validate(), Err(expected.clone()), "{bad:?}");
        assert_eq!(Machine::try_new(bad).err(), Some(expected));
    }
    assert_eq!(
        ParamsError::AdvertInterval(ms(15)).to_string(),
        "advert interval 15ms is not valid: VRRPv3 carries whole centiseconds from 10ms to 40.95s"
    );
}

#[test]
#[should_panic(expected = "VRRP parameters were not validated: vrid 0")]
fn new_refuses_unvalidated_params() {
    Machine::new(Params {
        vrid: 0,
        ..params(100, SECOND)
    });
}
