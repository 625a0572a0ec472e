namespace MedServe.Silo.Hosting;

/// <summary>
/// A graceful stop (SIGTERM, Ctrl+C) in three steps, so that no accepted request is dropped:
/// <list type="number">
/// <item>Drain (<c>--drain-seconds</c>): the node keeps serving everything, but <c>/v2/health/ready</c> answers
/// not ready and every response carries <c>Connection: close</c>, so load balancers and keep-alive clients move
/// to other silos while requests that still arrive here are answered.</item>
/// <item>Kestrel stops accepting connections and waits for the requests in flight to finish.</item>
/// <item>The Orleans silo leaves the cluster: its grains deactivate (a replica finishes the calls it is running
/// first) and calls for them are forwarded to new activations on compatible silos.</item>
/// </list>
/// Steps 2 and 3 come in that order because hosted services stop in reverse order of registration and the web
/// server is registered last; <see cref="IHostedLifecycleService.StoppingAsync"/> runs before any of them stops.
/// The whole stop is bounded by <see cref="HostOptions.ShutdownTimeout"/> (drain + 30 s).
/// </summary>
internal sealed partial class ShutdownDrain(NodeReadiness readiness, NodeOptions options, ILogger<ShutdownDrain> logger) : IHostedLifecycleService
{
    /// <summary>What the stop may take after the drain: in-flight requests (bounded by the grain call timeout) and the silo leaving.</summary>
    public static readonly TimeSpan StopBudget = TimeSpan.FromSeconds(30);

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        var drain = TimeSpan.FromSeconds(options.EffectiveDrainSeconds);
        readiness.MarkDraining();
        Draining(logger, drain.TotalSeconds);
        try
        {
            await Task.Delay(drain, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // The host's shutdown timeout cut the drain short: stop now.
        }
        Drained(logger);
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(2101, LogLevel.Information, "Stopping: draining for {Seconds} s (not ready, still serving)")]
    private static partial void Draining(ILogger logger, double seconds);

    [LoggerMessage(2102, LogLevel.Information, "Drained: closing the HTTP listener, then leaving the cluster")]
    private static partial void Drained(ILogger logger);
}
