namespace MedServe;

/// <summary>
/// When a study stored over DICOMweb (STOW-RS) starts a job on a model: every condition given must hold for a series
/// (modality among <see cref="Modalities"/>, body part among <see cref="BodyParts"/>, series description matching the
/// regular expression <see cref="SeriesDescription"/>, case-insensitive). Declared in the manifest (<c>dicom_routing</c>);
/// the facts are read before de-identification and never kept.
/// </summary>
[GenerateSerializer, Immutable, Alias("medserve.dicom-routing-rule")]
public sealed record DicomRoutingRule
{
    [Id(0)] public string[] Modalities { get; init; } = [];
    [Id(1)] public string[] BodyParts { get; init; } = [];
    [Id(2)] public string? SeriesDescription { get; init; }

    /// <summary>Whether a series with these facts goes to the model.</summary>
    public bool Matches(string? modality, string? bodyPart, string? seriesDescription) =>
        (Modalities.Length == 0 || Modalities.Contains(modality?.Trim() ?? "", StringComparer.OrdinalIgnoreCase))
        && (BodyParts.Length == 0 || BodyParts.Contains(bodyPart?.Trim() ?? "", StringComparer.OrdinalIgnoreCase))
        && (string.IsNullOrEmpty(SeriesDescription) || System.Text.RegularExpressions.Regex.IsMatch(seriesDescription ?? "", SeriesDescription,
            System.Text.RegularExpressions.RegexOptions.IgnoreCase | System.Text.RegularExpressions.RegexOptions.CultureInvariant, TimeSpan.FromMilliseconds(100)));
}

/// <summary>One de-identified instance of a stored study (its UIDs are the new ones).</summary>
[GenerateSerializer, Immutable, Alias("medserve.study-instance")]
public sealed record StudyInstance
{
    [Id(0)] public string SopInstanceUid { get; init; } = "";
    [Id(1)] public string SopClassUid { get; init; } = "";
    [Id(2)] public string SeriesUid { get; init; } = "";
    [Id(3)] public int? InstanceNumber { get; init; }
    /// <summary>SHA-256 of the de-identified file.</summary>
    [Id(4)] public string Sha256 { get; init; } = "";
    [Id(5)] public long Bytes { get; init; }
    [Id(6)] public string? Modality { get; init; }
}

/// <summary>A job a stored study started: which model ran on which series.</summary>
[GenerateSerializer, Immutable, Alias("medserve.study-job")]
public sealed record StudyJob
{
    [Id(0)] public string JobId { get; init; } = "";
    [Id(1)] public string Model { get; init; } = "";
    [Id(2)] public string Version { get; init; } = "";
    [Id(3)] public string SeriesUid { get; init; } = "";
    [Id(4)] public int Items { get; init; }
}

/// <summary>A study stored over DICOMweb, de-identified: its instances and the jobs it started.</summary>
[GenerateSerializer, Immutable, Alias("medserve.study-info")]
public sealed record StudyInfo
{
    /// <summary>The de-identified Study Instance UID.</summary>
    [Id(0)] public string StudyUid { get; init; } = "";
    [Id(1)] public DateTimeOffset ReceivedAt { get; init; }
    [Id(2)] public DateTimeOffset UpdatedAt { get; init; }
    /// <summary>The key id of whoever stored it first.</summary>
    [Id(3)] public string? Owner { get; init; }
    [Id(4)] public StudyInstance[] Instances { get; init; } = [];
    [Id(5)] public StudyJob[] Jobs { get; init; } = [];
}

/// <summary>A de-identified study (key: its new Study Instance UID). Instance bytes live encrypted in <see cref="IDicomInstanceGrain"/>s.</summary>
public interface IStudyGrain : IGrainWithStringKey
{
    /// <summary>Records instances (already stored) and answers the study; an instance already recorded is not added twice.</summary>
    Task<StudyInfo> AddInstancesAsync(StudyInstance[] instances, string? owner);

    Task<StudyInfo> AddJobsAsync(StudyJob[] jobs);

    /// <summary>The study, or null when none has this UID.</summary>
    Task<StudyInfo?> GetAsync();
}

/// <summary>One de-identified instance's Part 10 bytes, encrypted at rest (key: its new SOP Instance UID).</summary>
public interface IDicomInstanceGrain : IGrainWithStringKey
{
    Task StoreAsync(byte[] part10);

    Task<byte[]?> ReadAsync();
}

/// <summary>The list of stored studies (key 0): summaries only, so listing wakes no study.</summary>
public interface IStudyIndexGrain : IGrainWithIntegerKey
{
    Task SetAsync(StudyInfo study);

    Task<StudyInfo[]> ListAsync();
}

/// <summary>The cluster's pseudonym key (key 0): the secret behind de-identified UIDs, created once, kept encrypted.</summary>
public interface IPseudonymKeyGrain : IGrainWithIntegerKey
{
    Task<byte[]> GetKeyAsync();
}
