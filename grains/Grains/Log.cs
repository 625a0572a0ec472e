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

    [LoggerMessage(1501, LogLevel.Information, "Job {Job} submitted: {Items} items from {Source} for {Model}:{Version}")]
    public static partial void JobSubmitted(ILogger logger, string job, string model, string version, int items, string source);

    [LoggerMessage(1502, LogLevel.Information, "Job {Job} is {State}: {Answered} of {Total} items answered")]
    public static partial void JobEnded(ILogger logger, string job, JobState state, int answered, int total);

    [LoggerMessage(1503, LogLevel.Warning, "Job {Job}: {Deliveries} deliveries were not answered in time and are sent again")]
    public static partial void JobRedelivered(ILogger logger, string job, int deliveries);

    [LoggerMessage(1504, LogLevel.Warning, "Job {Job}: a delivery could not be sent ({ExceptionType}); its lease will resend it")]
    public static partial void JobDeliveryFailed(ILogger logger, string job, string exceptionType);

    [LoggerMessage(1505, LogLevel.Warning, "Job {Job}: delivery {Delivery} could not be reported ({ExceptionType}); its lease will resend it")]
    public static partial void JobReportFailed(ILogger logger, string job, long delivery, string exceptionType);

    [LoggerMessage(1506, LogLevel.Warning, "Could not resume running jobs after a membership change")]
    public static partial void JobResumeFailed(ILogger logger, Exception exception);
}
