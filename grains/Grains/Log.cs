using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;

namespace MedServe.Grains;

/// <summary>Every log line the grains write. Model names, versions and hashes only: never tensor values, never a caller-chosen id in clear.</summary>
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

    [LoggerMessage(1104, LogLevel.Information, "Replica {Replica} could not load because its silo was leaving ({ExceptionType}); try {Attempt} is placed again")]
    public static partial void ReplicaLoadRetried(ILogger logger, string replica, string exceptionType, int attempt);

    [LoggerMessage(1201, LogLevel.Information, "Replica {Replica} loaded sha256 {Sha256} on {ExecutionProvider} in {Milliseconds:F0} ms")]
    public static partial void ReplicaLoaded(ILogger logger, string replica, string sha256, string executionProvider, double milliseconds);

    [LoggerMessage(1202, LogLevel.Information, "Replica {Replica} unloaded")]
    public static partial void ReplicaUnloaded(ILogger logger, string replica);

    [LoggerMessage(1203, LogLevel.Error, "Replica {Replica} could not reload sha256 {Sha256} on activation")]
    public static partial void ReplicaReloadFailed(ILogger logger, Exception exception, string replica, string sha256);

    // Job ids are chosen by callers and may be patient identifiers (an MRN, a name): the log names a job by a hash of
    // its id (JobHash), which an operator can compute from an id they hold but the log cannot be read back to.

    /// <summary>What the log names a job (or any caller-chosen id) by: the first 12 hex digits of the SHA-256 of its id.</summary>
    public static string Hash(string id) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(id)))[..12];

    public static void JobSubmitted(ILogger logger, string job, string model, string version, int items, string source) =>
        JobSubmittedHashed(logger, Hash(job), model, version, items, source);

    public static void JobEnded(ILogger logger, string job, JobState state, int answered, int total) => JobEndedHashed(logger, Hash(job), state, answered, total);

    public static void JobRedelivered(ILogger logger, string job, int deliveries) => JobRedeliveredHashed(logger, Hash(job), deliveries);

    public static void JobDeliveryFailed(ILogger logger, string job, string exceptionType) => JobDeliveryFailedHashed(logger, Hash(job), exceptionType);

    public static void JobReportFailed(ILogger logger, string job, long delivery, string exceptionType) => JobReportFailedHashed(logger, Hash(job), delivery, exceptionType);

    [LoggerMessage(1501, LogLevel.Information, "Job {JobHash} submitted: {Items} items from {Source} for {Model}:{Version}")]
    private static partial void JobSubmittedHashed(ILogger logger, string jobHash, string model, string version, int items, string source);

    [LoggerMessage(1502, LogLevel.Information, "Job {JobHash} is {State}: {Answered} of {Total} items answered")]
    private static partial void JobEndedHashed(ILogger logger, string jobHash, JobState state, int answered, int total);

    [LoggerMessage(1503, LogLevel.Warning, "Job {JobHash}: {Deliveries} deliveries were not answered in time and are sent again")]
    private static partial void JobRedeliveredHashed(ILogger logger, string jobHash, int deliveries);

    [LoggerMessage(1504, LogLevel.Warning, "Job {JobHash}: a delivery could not be sent ({ExceptionType}); its lease will resend it")]
    private static partial void JobDeliveryFailedHashed(ILogger logger, string jobHash, string exceptionType);

    [LoggerMessage(1505, LogLevel.Warning, "Job {JobHash}: delivery {Delivery} could not be reported ({ExceptionType}); its lease will resend it")]
    private static partial void JobReportFailedHashed(ILogger logger, string jobHash, long delivery, string exceptionType);

    [LoggerMessage(1506, LogLevel.Warning, "Could not resume running jobs after a membership change")]
    public static partial void JobResumeFailed(ILogger logger, Exception exception);
}
