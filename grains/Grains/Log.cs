using Microsoft.Extensions.Logging;

namespace MedServe.Grains;

/// <summary>Every log line the grains write. Ids, versions and hashes only: never tensor values.</summary>
internal static partial class Log
{
    [LoggerMessage(1001, LogLevel.Information, "Registered {Model}:{Version} (sha256 {Sha256}, {Size} bytes)")]
    public static partial void Registered(ILogger logger, string model, string version, string sha256, long size);

    [LoggerMessage(1002, LogLevel.Information, "Deleted {Model}:{Version}")]
    public static partial void Deleted(ILogger logger, string model, string version);

    [LoggerMessage(1101, LogLevel.Information, "Deployment {Deployment} is {State}{Reason}")]
    public static partial void DeploymentState(ILogger logger, string deployment, DeploymentState state, string reason);

    [LoggerMessage(1102, LogLevel.Warning, "Deployment {Deployment} failed: {Reason}")]
    public static partial void DeploymentFailed(ILogger logger, string deployment, string reason);

    [LoggerMessage(1103, LogLevel.Warning, "Deployment {Deployment} could not free some replicas ({ExceptionType})")]
    public static partial void UnloadFailed(ILogger logger, string deployment, string exceptionType);

    [LoggerMessage(1201, LogLevel.Information, "Replica {Replica} loaded sha256 {Sha256} on {ExecutionProvider} in {Milliseconds:F0} ms")]
    public static partial void ReplicaLoaded(ILogger logger, string replica, string sha256, string executionProvider, double milliseconds);

    [LoggerMessage(1202, LogLevel.Information, "Replica {Replica} unloaded")]
    public static partial void ReplicaUnloaded(ILogger logger, string replica);

    [LoggerMessage(1203, LogLevel.Error, "Replica {Replica} could not reload sha256 {Sha256} on activation")]
    public static partial void ReplicaReloadFailed(ILogger logger, Exception exception, string replica, string sha256);
}
