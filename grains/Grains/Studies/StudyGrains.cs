using System.Security.Cryptography;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.DependencyInjection;

namespace MedServe.Grains.Studies;

[GenerateSerializer, Alias("medserve.study-state")]
public sealed class StudyState
{
    [Id(0)] public StudyInfo? Study { get; set; }
}

/// <summary>A de-identified study: which instances it holds and which jobs it started. No patient data: only new UIDs.</summary>
internal sealed class StudyGrain(
    [PersistentState("study", StorageNames.State)] IPersistentState<StudyState> state) : Grain, IStudyGrain
{
    public async Task<StudyInfo> AddInstancesAsync(StudyInstance[] instances, string? owner)
    {
        var now = DateTimeOffset.UtcNow;
        var study = state.State.Study ?? new StudyInfo { StudyUid = this.GetPrimaryKeyString(), ReceivedAt = now, Owner = owner };
        var known = study.Instances.Select(i => i.SopInstanceUid).ToHashSet(StringComparer.Ordinal);
        var added = instances.Where(i => known.Add(i.SopInstanceUid)).ToArray();
        study = study with { Instances = [.. study.Instances, .. added], UpdatedAt = now };
        await SaveAsync(study);
        return study;
    }

    public async Task<StudyInfo> AddJobsAsync(StudyJob[] jobs)
    {
        var study = state.State.Study ?? throw MedServeException.NotFound("no study has this UID");
        study = study with { Jobs = [.. study.Jobs, .. jobs], UpdatedAt = DateTimeOffset.UtcNow };
        await SaveAsync(study);
        return study;
    }

    private LeaveWhenQuiet? _leave;

    public Task<StudyInfo?> GetAsync()
    {
        if (state.State.Study is null)
        {
            // A UID nobody stored (any caller may ask about any): no activation stays for it.
            (_leave ??= new(this, DeactivateOnIdle, LeaveWhenQuiet.Default, () => state.State.Study is null)).Touch();
        }
        return Task.FromResult(state.State.Study);
    }

    private async Task SaveAsync(StudyInfo study)
    {
        var before = state.State.Study;
        state.State.Study = study;
        try
        {
            await state.WriteStateAsync();
        }
        catch
        {
            state.State.Study = before; // storage refused: memory must not claim what was not kept
            throw;
        }
        await GrainFactory.GetGrain<IStudyIndexGrain>(0).SetAsync(study with { Instances = [] });
    }
}

[GenerateSerializer, Alias("medserve.dicom-instance-state")]
public sealed class DicomInstanceState
{
    /// <summary>The de-identified Part 10 file, encrypted (<see cref="DicomInstanceGrain.ProtectionPurpose"/>, then the UID).</summary>
    [Id(0)] public byte[]? Sealed { get; set; }
}

/// <summary>One de-identified instance, encrypted at rest with the cluster's Data Protection keys.</summary>
internal sealed class DicomInstanceGrain(
    [PersistentState("dicom", StorageNames.State)] IPersistentState<DicomInstanceState> state,
    IDataProtectionProvider protection) : Grain, IDicomInstanceGrain
{
    public const string ProtectionPurpose = "MedServe.Studies.v1";

    private IDataProtector Protector => protection.CreateProtector(ProtectionPurpose).CreateProtector(this.GetPrimaryKeyString());

    /// <summary>
    /// Written once and read rarely: the activation goes once calls stop, so a stored series (hundreds of files of up to
    /// megabytes each) does not stay in the silo's memory for the collection age.
    /// </summary>
    private LeaveWhenQuiet Leave => _leave ??= new(this, DeactivateOnIdle, LeaveWhenQuiet.Default);

    private LeaveWhenQuiet? _leave;

    public async Task StoreAsync(byte[] part10)
    {
        Leave.Touch();
        state.State.Sealed = Protector.Protect(part10);
        await state.WriteStateAsync();
    }

    public Task<byte[]?> ReadAsync()
    {
        Leave.Touch();
        return Task.FromResult(state.State.Sealed is { } sealedBytes ? Protector.Unprotect(sealedBytes) : null);
    }
}

[GenerateSerializer, Alias("medserve.study-index-state")]
public sealed class StudyIndexState
{
    [Id(0)] public Dictionary<string, StudyInfo> Studies { get; set; } = new(StringComparer.Ordinal);
}

internal sealed class StudyIndexGrain(
    [PersistentState("study-index", StorageNames.State)] IPersistentState<StudyIndexState> state) : Grain, IStudyIndexGrain
{
    public async Task SetAsync(StudyInfo study)
    {
        state.State.Studies[study.StudyUid] = study;
        await state.WriteStateAsync();
    }

    public Task<StudyInfo[]> ListAsync() => Task.FromResult(state.State.Studies.Values.OrderByDescending(s => s.UpdatedAt).ToArray());
}

[GenerateSerializer, Alias("medserve.pseudonym-key-state")]
public sealed class PseudonymKeyState
{
    [Id(0)] public byte[]? Sealed { get; set; }
}

/// <summary>The cluster's pseudonym key: 32 random bytes made on first use, stored encrypted like job data.</summary>
internal sealed class PseudonymKeyGrain(
    [PersistentState("pseudonym-key", StorageNames.State)] IPersistentState<PseudonymKeyState> state,
    IDataProtectionProvider protection) : Grain, IPseudonymKeyGrain
{
    private IDataProtector Protector => protection.CreateProtector("MedServe.PseudonymKey.v1");

    public async Task<byte[]> GetKeyAsync()
    {
        if (state.State.Sealed is { } sealedBytes)
        {
            return Protector.Unprotect(sealedBytes);
        }
        var key = RandomNumberGenerator.GetBytes(32);
        state.State.Sealed = Protector.Protect(key);
        await state.WriteStateAsync();
        return key;
    }
}
