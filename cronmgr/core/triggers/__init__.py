"""When things fire: triggers turn a moment into the next slot, and the rules on what a
schedule's timing may be.

`rules` holds the triggers (interval, cron with its daylight saving time rule, once),
`parsing` the parsed form of a cron expression and the checks of cron expressions and
timezone names, `wall_clock` the arithmetic between wall times and instants, and
`schedules` a schedule's trigger, its upcoming fire times and the jitter of its slots.
"""
