namespace MedServe;

/// <summary>What went wrong, in terms a front end can map to its protocol (HTTP status, CLI exit code).</summary>
public enum ErrorKind
{
    /// <summary>The caller sent something wrong: 400.</summary>
    InvalidInput,
    /// <summary>No such model, version or deployment: 404.</summary>
    NotFound,
    /// <summary>The request conflicts with current state (duplicate version, deleting a deployed one): 409.</summary>
    Conflict,
    /// <summary>The model exists but cannot serve now (loading, failed validation): 503.</summary>
    NotReady,
    /// <summary>The body is larger than allowed: 413.</summary>
    TooLarge,
    /// <summary>The server failed: 500.</summary>
    Internal,
    /// <summary>The version's queue is full: 429 with Retry-After. Nothing was run.</summary>
    Overloaded,
    /// <summary>The request's timeout passed while it waited in the queue: 504. Nothing was run.</summary>
    Timeout,
    /// <summary>The caller's role may not do this: 403.</summary>
    Forbidden,
    /// <summary>The body's format, or an encoding inside it (a DICOM transfer syntax), is one this endpoint or model does not take: 415.</summary>
    UnsupportedMediaType,
    /// <summary>
    /// The replica could not run the request just now, through no fault of the input (out of memory, an execution
    /// provider error, a failed session): 503 with Retry-After. The same request may succeed later.
    /// </summary>
    Unavailable,
}

/// <summary>
/// An error whose message is safe to show to the caller and to log: it names fields, shapes and ids,
/// never tensor values.
/// </summary>
[GenerateSerializer, Alias("medserve.error")]
public sealed class MedServeException : Exception
{
    public MedServeException(ErrorKind kind, string message, string? field = null)
        : base(message)
    {
        Kind = kind;
        Field = field;
    }

    public MedServeException()
    {
    }

    public MedServeException(string message) : base(message)
    {
    }

    public MedServeException(string message, Exception innerException) : base(message, innerException)
    {
    }

    /// <summary>The kind of failure.</summary>
    [Id(0)]
    public ErrorKind Kind { get; init; } = ErrorKind.Internal;

    /// <summary>The offending field (manifest path, tensor name), when one is to blame.</summary>
    [Id(1)]
    public string? Field { get; init; }

    public static MedServeException Invalid(string message, string? field = null) => new(ErrorKind.InvalidInput, message, field);

    public static MedServeException NotFound(string message) => new(ErrorKind.NotFound, message);

    public static MedServeException Conflict(string message, string? field = null) => new(ErrorKind.Conflict, message, field);

    public static MedServeException NotReady(string message) => new(ErrorKind.NotReady, message);

    public static MedServeException Forbidden(string message) => new(ErrorKind.Forbidden, message);

    public static MedServeException Overloaded(string message) => new(ErrorKind.Overloaded, message);

    public static MedServeException TimedOut(string message) => new(ErrorKind.Timeout, message);

    public static MedServeException Unsupported(string message, string? field = null) => new(ErrorKind.UnsupportedMediaType, message, field);

    public static MedServeException Unavailable(string message) => new(ErrorKind.Unavailable, message);

    /// <summary>Worth retrying later (the same request may succeed): not ready, overloaded, unavailable.</summary>
    public bool IsRetryable => Kind is ErrorKind.NotReady or ErrorKind.Overloaded or ErrorKind.Unavailable;
}

/// <summary>
/// What may be logged of an unexpected exception: its type and where it was thrown (the stack's frames), for it and
/// each inner exception; never a message, which may carry input values.
/// </summary>
public static class ErrorShape
{
    public static string Of(Exception e)
    {
        var text = new System.Text.StringBuilder();
        for (var current = e; current is not null; current = current.InnerException)
        {
            if (text.Length > 0)
            {
                text.Append(" <- ");
            }
            text.Append(current.GetType().FullName);
            var frames = new System.Diagnostics.StackTrace(current, fNeedFileInfo: false).GetFrames();
            foreach (var frame in frames.Take(12))
            {
                if (frame.GetMethod() is { } method)
                {
                    text.Append(" at ").Append(method.DeclaringType?.FullName).Append('.').Append(method.Name);
                }
            }
        }
        return text.ToString();
    }
}
