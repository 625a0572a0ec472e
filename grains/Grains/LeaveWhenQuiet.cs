namespace MedServe.Grains;

/// <summary>
/// Lets a grain's activation go once calls to it have stopped for <c>after</c> (each <see cref="Touch"/> starts the wait
/// again). For grains that hold nothing worth keeping after a call (a key nobody stored, data written once) but may get
/// calls in bursts: going after the first call of a burst would bounce the rest between activations, and Orleans forwards
/// a message at most twice before it refuses it (several silos loading one artifact, a cancelled job's late answers).
/// </summary>
/// <param name="holdsNothing">Asked when the wait ends: a grain that has come to hold something meanwhile (a job submitted
/// under the id just asked about, a study stored under the UID) stays.</param>
internal sealed class LeaveWhenQuiet(IGrainBase grain, Action deactivateOnIdle, TimeSpan after, Func<bool>? holdsNothing = null)
{
    /// <summary>How long a grain that holds nothing stays after its last call.</summary>
    public static readonly TimeSpan Default = TimeSpan.FromSeconds(2);

    private IGrainTimer? _timer;

    /// <summary>Called from the grain's own calls: the activation goes <c>after</c> from now unless another call comes.</summary>
    public void Touch()
    {
        if (_timer is null)
        {
            _timer = grain.RegisterGrainTimer(() =>
            {
                if (holdsNothing?.Invoke() ?? true)
                {
                    deactivateOnIdle();
                }
                return Task.CompletedTask;
            }, after, Timeout.InfiniteTimeSpan);
        }
        else
        {
            _timer.Change(after, Timeout.InfiniteTimeSpan);
        }
    }
}
